// Tunnel addresses: the network is checked, each name gets a stable address from a hash, collisions take the
// next free one, the network's first and last addresses are never handed out.
#include "tools/endpoint/tunnel_net.hh"

#include <doctest/doctest.h>

#include <set>

using namespace zt::endpoint;

TEST_CASE("the tunnel network must be loopback with a sane prefix") {
    std::string err;
    auto n = parse_tunnel_net("127.77.0.0/16", err);
    REQUIRE(n);
    CHECK(n->base == 0x7f4d0000u);
    CHECK(n->size() == 65536);
    CHECK_FALSE(parse_tunnel_net("198.18.0.0/16", err));
    CHECK(err.find("127.0.0.0/8") != std::string::npos);
    CHECK_FALSE(parse_tunnel_net("127.77.0.1/16", err));
    CHECK_FALSE(parse_tunnel_net("127.77.0.0", err));
    CHECK_FALSE(parse_tunnel_net("127.77.0.0/31", err));
    CHECK_FALSE(parse_tunnel_net("127.77.0.0/x", err));
    CHECK(parse_tunnel_net("127.0.0.0/8", err));
    CHECK(ipv4_text(0x7f4d0102u) == "127.77.1.2");
}

TEST_CASE("addresses are stable per name and unique") {
    std::string err;
    auto n = *parse_tunnel_net("127.77.0.0/16", err);
    address_allocator a(n), b(n);
    auto x = a.assign("db.internal.corp");
    REQUIRE(x);
    CHECK(*x == a.preferred("db.internal.corp"));
    CHECK(b.assign("db.internal.corp") == x); // another process, same name: same address
    CHECK(a.assign("db.internal.corp") == x);
    CHECK(a.find("db.internal.corp") == x);
    CHECK_FALSE(a.find("cache.internal.corp"));
    std::set<uint32_t> seen;
    for (int i = 0; i < 2000; ++i) {
        auto v = a.assign("n" + std::to_string(i) + ".corp");
        REQUIRE(v);
        CHECK(*v > n.base);
        CHECK(*v < n.base + n.size() - 1);
        seen.insert(*v);
    }
    CHECK(seen.size() == 2000);
    a.release("db.internal.corp");
    CHECK_FALSE(a.find("db.internal.corp"));
}

TEST_CASE("collisions take the next free address; a full network says so") {
    std::string err;
    auto n = *parse_tunnel_net("127.77.0.0/30", err); // 4 addresses, 2 usable
    address_allocator a(n);
    auto x = a.assign("a.corp"), y = a.assign("b.corp");
    REQUIRE(x);
    REQUIRE(y);
    CHECK(*x != *y);
    for (uint32_t v : {*x, *y}) {
        CHECK((v == n.base + 1 || v == n.base + 2));
    }
    CHECK_FALSE(a.assign("c.corp"));
    a.release("a.corp");
    auto z = a.assign("c.corp");
    REQUIRE(z);
    CHECK(*z == *x);
}
