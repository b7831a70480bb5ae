// Active health checks: the board's verdicts as shards read them, and the
// prober's rounds against a real listener and a closed port on loopback.
#include "common/config/model.hh"
#include "common/net/socket.hh"
#include "control/table/compiler.hh"
#include "dataplane/health.hh"

#include <doctest/doctest.h>

#include <unistd.h>

using namespace zt;

TEST_CASE("the board: unknown backends are up; verdicts are kept per key; a full board says so") {
    static dataplane::health_board board; // 16 KiB: not on the stack
    CHECK_FALSE(board.down(12345));
    CHECK(board.set(12345, true));
    CHECK(board.down(12345));
    CHECK_FALSE(board.down(12345 + dataplane::health_board::capacity)); // same bucket, another key
    CHECK(board.set(12345, false));
    CHECK_FALSE(board.down(12345));
    for (uint64_t k = 1; k < dataplane::health_board::capacity; ++k) {
        CHECK(board.set(k * 7 + 100000, true));
    }
    CHECK_FALSE(board.set(99, true));
    CHECK(board.down(100007));
}

TEST_CASE("rounds: a closed port goes down after `fall` failures, up after `rise` successes") {
    std::string err;
    net::address any;
    REQUIRE(net::parse_address("127.0.0.1:0", any));
    int live = net::listen_tcp(any, 16, err);
    REQUIRE(live >= 0);
    uint16_t live_port = net::bound_port(live);
    int probe = net::listen_tcp(any, 16, err); // a port nobody listens on once closed
    REQUIRE(probe >= 0);
    uint16_t dead_port = net::bound_port(probe);
    ::close(probe);

    config::config c;
    config::zone z;
    z.name = "db.internal.corp";
    z.service_cn = "s000000000001";
    c.zones.push_back(z);
    config::route r{"s000000000001", "PG", {{"127.0.0.1", live_port, 1}, {"127.0.0.1", dead_port, 1}}, {"db.internal.corp"}};
    r.health_check = true;
    c.routes.push_back(r);
    c.endpoints.push_back({"s000000000001", "PG", config::endpoint_kind::service, "01", 4102444800, false});
    auto compiled = control::compile(c, 1);
    REQUIRE(compiled.ok());
    table::holder holder(1);
    auto blob = table::blob::copy_of(compiled.blob);
    auto opened = table::open(blob.bytes());
    REQUIRE(opened.ok());
    holder.publish(std::move(blob), opened.view);

    static dataplane::health_board board;
    dataplane::health_prober prober(board, holder.add_reader(), {2000, 500, 2, 2});
    auto key = [](uint16_t port) {
        table::format::backend f{};
        f.family = table::format::family_ipv4;
        f.port = port;
        f.addr[0] = 127;
        f.addr[3] = 1;
        return dataplane::address_key(dataplane::backend_address(f));
    };
    prober.round();
    CHECK_FALSE(board.down(key(dead_port))); // one failure is not enough
    prober.round();
    CHECK(board.down(key(dead_port)));
    CHECK_FALSE(board.down(key(live_port)));

    // The port comes back: up after two good rounds.
    net::address back;
    REQUIRE(net::parse_address("127.0.0.1:" + std::to_string(dead_port), back));
    int revived = net::listen_tcp(back, 16, err);
    REQUIRE_MESSAGE(revived >= 0, err);
    prober.round();
    CHECK(board.down(key(dead_port)));
    prober.round();
    CHECK_FALSE(board.down(key(dead_port)));
    ::close(revived);
    ::close(live);
}
