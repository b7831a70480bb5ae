// The data plane's steady state allocates nothing: a real shard on loopback
// answers thousands of pipelined private-zone queries over mutual TLS (from a
// Python ssl client in another process) while a counting operator new and
// wolfSSL's pooled allocator watch the shard thread.
#include "common/config/parse.hh"
#include "common/tls/alloc.hh"
#include "common/util/fs.hh"
#include "control/ca/ca.hh"
#include "control/table/compiler.hh"
#include "dataplane/shard.hh"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <thread>

namespace {
thread_local bool t_counting = false;
std::atomic<uint64_t> g_news{0};
} // namespace

// Replacing the global operators pairs our malloc with free; GCC cannot see that.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(size_t n) {
    if (t_counting) {
        g_news.fetch_add(1, std::memory_order_relaxed);
    }
    if (void* p = std::malloc(n ? n : 1)) {
        return p;
    }
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

using namespace zt;

TEST_CASE("thousands of private-zone queries: zero allocations on the shard") {
    tls::init();
    char tmpl[] = "/tmp/zt-alloc.XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    std::string dir = tmpl;

    auto ca = control::ca::authority::create(config::key_type::ecdsa_p256, 30);
    auto server = ca.issue_server("edge1.test", {"127.0.0.1"}, config::key_type::ecdsa_p256, 30);
    auto client = ca.issue_endpoint(config::endpoint_kind::client, "alice", config::key_type::ecdsa_p256, 30,
                                    [](const std::string&) { return false; });
    REQUIRE(fs::write_atomic(dir + "/cert.pem", std::string_view(client.cert_pem)).empty());
    REQUIRE(fs::write_atomic(dir + "/key.pem", std::string_view(client.key_pem), 0600).empty());
    REQUIRE(fs::write_atomic(dir + "/ca.crt", std::string_view(ca.cert_pem())).empty());

    config::config c;
    config::zone z;
    z.name = "db.internal.corp";
    std::string why;
    z.records.push_back({"@", {*config::parse_record("A 203.0.113.50", why)}});
    z.service_cn = "s000000000001";
    z.allowed_endpoints = {client.cn};
    c.zones.push_back(z);
    c.routes.push_back({"s000000000001", "PG", {{"10.10.10.50", 5432, 1}}, {"db.internal.corp"}});
    c.endpoints.push_back({client.cn, "alice", config::endpoint_kind::client, client.serial_hex, client.not_after, false});
    c.endpoints.push_back({"s000000000001", "PG", config::endpoint_kind::service, "01", client.not_after, false});
    auto compiled = control::compile(c, 1);
    REQUIRE(compiled.ok());
    table::holder holder(2);
    auto blob = table::blob::copy_of(compiled.blob);
    auto opened = table::open(blob.bytes());
    REQUIRE(opened.ok());
    holder.publish(std::move(blob), opened.view);

    std::string err;
    auto server_tls = tls::context::create({true, server.cert_pem, server.key_pem, ca.cert_pem(), true, false}, err);
    REQUIRE_MESSAGE(server_tls.valid(), err);

    net::address addr;
    REQUIRE(net::parse_address("127.0.0.1:0", addr));
    int first = net::listen_tcp(addr, 16, err);
    REQUIRE(first >= 0);
    uint16_t port = net::bound_port(first);
    REQUIRE(net::parse_address("127.0.0.1:" + std::to_string(port), addr));

    dataplane::shard_options o;
    o.dot_listen = {addr};
    o.server_name = "edge1.test";
    o.max_connections = 64;
    o.buffer_chunks = 64;
    o.cache_entries = 64;
    dataplane::shard_shared shared;
    shared.server_tls.store(&server_tls);
    dataplane::shard_counters counters;
    dataplane::shard s(0, o, shared, holder.add_reader(), counters);
    std::atomic<int> state{0};
    std::thread t([&] {
        t_counting = true;
        std::string e;
        bool ok = s.init(e);
        state = ok ? 1 : -1;
        if (ok) {
            s.run();
        }
    });
    while (state == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ::close(first);
    REQUIRE(state == 1);

    // Per-query log lines are formatted too, into the shard's buffer; keep them out of the test output.
    int saved_stderr = dup(2);
    int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    std::string client_cmd = "python3 " + std::string(ZT_SOURCE_ROOT) + "/tests/e2e/dot_client.py 127.0.0.1 " +
                             std::to_string(port) + " " + dir + " edge1.test pipeline ";
    // Warm up: pools, buffers and the kernel's side reach their working size.
    int warm1 = std::system((client_cmd + "2000 db.internal.corp > /dev/null").c_str());
    int warm2 = std::system((client_cmd + "2000 db.internal.corp > /dev/null").c_str());
    uint64_t news = g_news.load(), tls_allocs = tls::system_allocations();
    uint64_t queries = s.counters().queries_private;
    int run = std::system((client_cmd + "5000 db.internal.corp > /dev/null").c_str());
    uint64_t news_after = g_news.load(), tls_allocs_after = tls::system_allocations();
    uint64_t queries_after = s.counters().queries_private;
    dup2(saved_stderr, 2);
    CHECK(warm1 == 0);
    CHECK(warm2 == 0);
    CHECK(run == 0);
    CHECK(queries_after - queries == 5000);
    // The counters are live: the shard's start-up allocated, and wolfSSL's pools were filled from the system.
    CHECK(news > 0);
    CHECK(tls_allocs > 0);
    CHECK_MESSAGE(news_after - news == 0, "operator new calls on the shard thread during 5000 queries");
    CHECK_MESSAGE(tls_allocs_after - tls_allocs == 0, "wolfSSL allocations that reached malloc during 5000 queries");
    MESSAGE("5000 private queries over one new mTLS connection: ", news_after - news, " operator new, ",
            tls_allocs_after - tls_allocs, " wolfSSL system allocations");

    shared.stop = true;
    s.wake();
    t.join();
    CHECK(std::system(("rm -rf " + dir).c_str()) == 0);
}
