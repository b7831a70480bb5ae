// The endpoint's I/O against a real mutual-TLS peer on loopback (a server thread with blocking sockets and
// common/tls): the DoT pool pipelines queries and matches answers that come back in reverse order, every query
// ends once, and with no server a query fails at once; a client tunnel carries bytes both ways with the SNI it was
// given, and passes a half-close on; it goes on to the next proxy address when one refuses, and is cut naming every
// address when all do; a service pool whose proxy drops all its young parked connections at once counts that as one
// failure and dials again soon.
#include "common/dns/framing.hh"
#include "common/proto/client_hello.hh"
#include "common/tls/tls.hh"
#include "control/ca/ca.hh"
#include "tools/endpoint/bridge.hh"
#include "tools/endpoint/dot_pool.hh"
#include "tools/endpoint/names.hh"
#include "tools/endpoint/service.hh"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace zt;
using namespace zt::endpoint;

namespace {

struct pki {
    control::ca::authority ca = control::ca::authority::create(config::key_type::ecdsa_p256, 30);
    control::ca::issued server = ca.issue_server("edge1.test", {"127.0.0.1"}, config::key_type::ecdsa_p256, 30);
    control::ca::issued client =
        ca.issue_endpoint(config::endpoint_kind::client, "alice", config::key_type::ecdsa_p256, 30, {});
    tls::context server_ctx, client_ctx;
    pki() {
        std::string err;
        server_ctx = tls::context::create({true, server.cert_pem, server.key_pem, ca.cert_pem(), true, false}, err);
        client_ctx = tls::context::create({false, client.cert_pem, client.key_pem, ca.cert_pem(), true, false}, err);
        REQUIRE(server_ctx.valid());
        REQUIRE(client_ctx.valid());
    }
};

int listen_loopback(uint16_t& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    port = ntohs(sa.sin_port);
    return fd;
}

/// One server-side TLS connection over a blocking socket.
struct server_conn {
    int fd;
    tls::session s;
    std::vector<std::byte> out_storage = std::vector<std::byte>(1 << 17);
    tls::out_buffer out{out_storage.data(), uint32_t(out_storage.size()), 0};
    std::vector<std::byte> in;
    std::vector<std::byte> hello; ///< the first bytes received: the ClientHello, for its SNI
    bool eof = false;
    std::string sni, cn;

    server_conn(int f, const tls::context& ctx) : fd(f) { s.start(ctx, &out); }
    ~server_conn() { ::close(fd); }
    void flush() {
        size_t off = 0;
        while (off < out.length) {
            ssize_t n = ::send(fd, out.data + off, out.length - off, MSG_NOSIGNAL);
            if (n <= 0) {
                break;
            }
            off += size_t(n);
        }
        out.length = 0;
    }
    bool recv_more() {
        std::array<std::byte, 65536> buf;
        ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n <= 0) {
            eof = true;
            return false;
        }
        in.insert(in.end(), buf.begin(), buf.begin() + n);
        if (hello.size() < 4096) {
            hello.insert(hello.end(), buf.begin(), buf.begin() + std::min<ssize_t>(n, 4096));
        }
        return true;
    }
    template <typename F>
    tls::status call(F&& f) {
        s.feed(in);
        tls::status st = f();
        in.erase(in.begin(), in.end() - ptrdiff_t(s.input_left()));
        flush();
        return st;
    }
    bool handshake() {
        for (;;) {
            auto st = call([&] { return s.handshake(); });
            if (st == tls::status::done) {
                std::array<char, proto::name_buffer_size> nb{};
                auto h = proto::sniff_client_hello(hello, std::span<char, proto::name_buffer_size>(nb));
                sni = h.status == proto::tls_status::found ? std::string(h.sni.text) : "";
                cn = std::string(s.peer_cn());
                return true;
            }
            if (st != tls::status::want_read || !recv_more()) {
                return false;
            }
        }
    }
    /// Some plaintext; empty at close_notify or EOF.
    std::vector<std::byte> read() {
        std::array<std::byte, 65536> buf;
        for (;;) {
            size_t n = 0;
            auto st = call([&] { return s.read(buf, n); });
            if (st == tls::status::done) {
                return {buf.begin(), buf.begin() + ptrdiff_t(n)};
            }
            if (st != tls::status::want_read || !recv_more()) {
                return {};
            }
        }
    }
    void write(std::span<const std::byte> b) {
        while (!b.empty()) {
            size_t n = 0;
            call([&] { return s.write(b.first(std::min<size_t>(b.size(), 16384)), n); });
            b = b.subspan(n);
        }
    }
};

/// Runs the loop until `done()` or the deadline.
template <typename F>
bool run_until(loop& l, F&& done, ms_t limit_ms = 10000) {
    const ms_t end = monotonic_ms() + limit_ms;
    l.add_ticker([&l, &done, end](ms_t now) {
        if (done() || now >= end) {
            l.stop();
        }
        return now + 20;
    });
    l.run();
    return done();
}

net::address loopback(uint16_t port) {
    net::address a;
    REQUIRE(net::parse_address("127.0.0.1:" + std::to_string(port), a));
    return a;
}

/// A loopback port nobody listens on (connections to it are refused).
uint16_t refusing_port() {
    uint16_t port = 0;
    ::close(listen_loopback(port));
    return port;
}

} // namespace

TEST_CASE("the backoff doubles from its first wait after each failure, up to 10 s") {
    CHECK(backoff_ms(200, 1) == 200);
    CHECK(backoff_ms(200, 2) == 400);
    CHECK(backoff_ms(200, 6) == 6400);
    CHECK(backoff_ms(100, 7) == 6400);
    CHECK(backoff_ms(200, 7) == 10000);
    CHECK(backoff_ms(100, 1000) == 10000);
}

TEST_CASE("the DoT pool pipelines queries and matches answers sent back in reverse order") {
    pki p;
    uint16_t port = 0;
    int lfd = listen_loopback(port);
    constexpr int queries = 20;
    std::atomic<int> served{0};
    std::thread server([&] {
        int fd = ::accept(lfd, nullptr, nullptr);
        server_conn c(fd, p.server_ctx);
        if (!c.handshake()) {
            return;
        }
        std::vector<std::byte> plain;
        std::vector<std::vector<std::byte>> got;
        while (int(got.size()) < queries) {
            auto b = c.read();
            if (b.empty()) {
                return;
            }
            plain.insert(plain.end(), b.begin(), b.end());
            for (;;) {
                auto f = dns::next_frame(plain);
                if (f.status != dns::frame_status::complete) {
                    break;
                }
                got.emplace_back(f.message.begin(), f.message.end());
                plain.erase(plain.begin(), plain.begin() + ptrdiff_t(f.consumed));
            }
        }
        for (auto it = got.rbegin(); it != got.rend(); ++it) {
            std::array<char, dns::name_buffer_size> nb{};
            auto q = dns::parse_query(*it, std::span<char, dns::name_buffer_size>(nb));
            // The answer's address carries the query's number, from its name "qN.test".
            uint8_t n = uint8_t(std::stoi(std::string(q.qname.substr(1, q.qname.find('.') - 1))));
            std::array<uint8_t, 4> a{198, 18, 0, n};
            dns::response_spec spec;
            spec.ttl = 60;
            spec.a = std::span(&a, 1);
            std::array<std::byte, 1024> resp;
            auto r = dns::build_response(q, spec, resp);
            std::array<std::byte, 2> prefix;
            dns::write_frame_prefix(prefix, r.size);
            c.write(prefix);
            c.write(std::span(resp).first(r.size));
            ++served;
        }
        c.read(); // until the client goes away
    });

    loop l;
    address_choice servers({loopback(port)}, 0);
    auto owned = std::make_unique<dot_pool>(l, p.client_ctx, servers, "edge1.test", 1);
    dot_pool& pool = *owned;
    pool.start();
    int answered = 0, right = 0;
    for (int i = 0; i < queries; ++i) {
        std::array<std::byte, 512> q;
        size_t n = build_query(q, uint16_t(1000 + i), "q" + std::to_string(i) + ".test", dns::rr_type::a);
        pool.submit(std::span(q).first(n), l.now() + 5000, [&, i](std::span<const std::byte> a) {
            ++answered;
            auto recs = read_records(a);
            auto h = dns::read_header(a);
            if (recs && h && h->id == 1000 + i && !recs->empty() && (*recs)[0].rdata_size == 4 &&
                std::to_integer<int>(a[(*recs)[0].rdata_offset + 3]) == i) {
                ++right;
            }
        });
    }
    l.add_ticker([&](ms_t now) { return pool.tick(now); });
    CHECK(run_until(l, [&] { return answered == queries; }));
    CHECK(right == queries);
    CHECK(served == queries);
    CHECK(pool.up());
    ::close(lfd);
    owned.reset(); // closes its connection: the server thread sees EOF
    server.join();
}

TEST_CASE("with no server, a query fails at once, exactly once") {
    pki p;
    uint16_t port = 0;
    int lfd = listen_loopback(port);
    ::close(lfd); // nobody listens on this port now
    loop l;
    address_choice servers({loopback(port)}, 0);
    dot_pool pool(l, p.client_ctx, servers, "edge1.test", 2);
    pool.start();
    l.add_ticker([&](ms_t now) { return pool.tick(now); });
    std::array<std::byte, 512> q;
    size_t n = build_query(q, 7, "www.public.test", dns::rr_type::a);
    auto query = std::span<const std::byte>(q).first(n);
    int first = 0, second = 0;
    bool empty = true;
    ms_t second_took = 0;
    const ms_t start = monotonic_ms();
    // The first waits for the connections being made; the second arrives while they are down (backoff).
    pool.submit(query, l.now() + 5000, [&](std::span<const std::byte> a) {
        ++first;
        empty = empty && a.empty();
        const ms_t t = monotonic_ms();
        pool.submit(query, l.now() + 5000, [&, t](std::span<const std::byte> b) {
            ++second;
            empty = empty && b.empty();
            second_took = monotonic_ms() - t;
        });
    });
    CHECK(run_until(
        l, [&] { return first > 0 && second > 0; }, 3000));
    CHECK(monotonic_ms() - start < 1000);
    CHECK(second_took < 500);
    CHECK(first == 1);
    CHECK(second == 1);
    CHECK(empty);
    CHECK_FALSE(pool.up());
}

TEST_CASE("a client tunnel carries bytes both ways with its SNI, and passes a half-close on") {
    pki p;
    uint16_t port = 0;
    int lfd = listen_loopback(port);
    constexpr size_t total = 4 << 20;
    std::string seen_sni, seen_cn;
    size_t echoed = 0;
    bool clean_close = false;
    std::thread server([&] {
        int fd = ::accept(lfd, nullptr, nullptr);
        server_conn c(fd, p.server_ctx);
        if (!c.handshake()) {
            return;
        }
        seen_sni = c.sni;
        seen_cn = c.cn;
        // An echo service behind the proxy: echo until the client's half-close, then say how much and close.
        for (;;) {
            auto b = c.read();
            if (b.empty()) {
                break;
            }
            c.write(b);
            echoed += b.size();
        }
        std::string done = "bytes " + std::to_string(echoed) + "\n";
        c.write(std::as_bytes(std::span(done.data(), done.size())));
        c.s.shutdown();
        c.flush();
        ::shutdown(fd, SHUT_WR);
        std::array<std::byte, 16> tail;
        clean_close = ::recv(fd, tail.data(), tail.size(), 0) == 0 || c.read().empty();
    });

    int app[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, app) == 0);
    loop l;
    address_choice proxies({loopback(port)}, 0);
    auto b =
        bridge::client(l, app[1], "db.internal.corp", proxies, {&p.client_ctx, "db.internal.corp", "edge1.test", {}});
    l.add_ticker([&](ms_t now) { return b->tick(now); });

    // The application: write everything, then shut its side; read until EOF.
    std::vector<std::byte> data(total);
    for (size_t i = 0; i < total; ++i) {
        data[i] = std::byte(i * 131 % 251);
    }
    std::vector<std::byte> got;
    size_t sent = 0;
    bool shut = false, eof = false;
    struct app_side : io_handler {
        std::function<void()> f;
        void on_io(uint32_t) override { f(); }
    } side;
    fd_watch w;
    w.attach(l, app[0], &side);
    side.f = [&] {
        while (sent < total) {
            ssize_t n = ::send(app[0], data.data() + sent, std::min<size_t>(total - sent, 1 << 16), MSG_NOSIGNAL);
            if (n <= 0) {
                break;
            }
            sent += size_t(n);
        }
        if (sent == total && !shut) {
            ::shutdown(app[0], SHUT_WR);
            shut = true;
        }
        std::array<std::byte, 65536> buf;
        for (;;) {
            ssize_t n = ::recv(app[0], buf.data(), buf.size(), 0);
            if (n > 0) {
                got.insert(got.end(), buf.begin(), buf.begin() + n);
            } else {
                eof = n == 0;
                break;
            }
        }
        w.set(eof ? 0u : uint32_t(EPOLLIN) | (shut ? 0u : uint32_t(EPOLLOUT)));
    };
    side.f();
    CHECK(run_until(
        l, [&] { return eof && b->done(); }, 20000));
    server.join();
    ::close(lfd);
    CHECK(seen_sni == "db.internal.corp");
    CHECK(seen_cn == p.client.cn);
    CHECK(echoed == total);
    REQUIRE(got.size() >= total);
    CHECK(std::memcmp(got.data(), data.data(), total) == 0);
    CHECK(std::string(reinterpret_cast<const char*>(got.data()) + total, got.size() - total) ==
          "bytes " + std::to_string(total) + "\n");
    CHECK(b->error().empty());
    CHECK(clean_close);
}

TEST_CASE("a client tunnel goes on to the next proxy address when the first refuses, and remembers it") {
    pki p;
    uint16_t port = 0;
    int lfd = listen_loopback(port);
    const uint16_t dead = refusing_port();
    std::thread server([&] {
        int fd = ::accept(lfd, nullptr, nullptr);
        server_conn c(fd, p.server_ctx);
        if (!c.handshake()) {
            return;
        }
        c.write(c.read()); // one echo, then close_notify and FIN
        c.s.shutdown();
        c.flush();
        ::shutdown(fd, SHUT_WR);
        c.read();
    });
    int app[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, app) == 0);
    REQUIRE(::send(app[0], "ping", 4, MSG_NOSIGNAL) == 4);
    loop l;
    address_choice proxies({loopback(dead), loopback(port)}, 0);
    auto b =
        bridge::client(l, app[1], "db.internal.corp", proxies, {&p.client_ctx, "db.internal.corp", "edge1.test", {}});
    l.add_ticker([&](ms_t now) { return b->tick(now); });
    std::string got;
    CHECK(run_until(l, [&] {
        char buf[16];
        ssize_t n = ::recv(app[0], buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            got.append(buf, size_t(n));
            ::shutdown(app[0], SHUT_WR);
        }
        return b->done();
    }));
    server.join();
    ::close(lfd);
    ::close(app[0]);
    CHECK(got == "ping");
    CHECK(b->error().empty());
    CHECK(proxies.down(0, l.now()));
    CHECK_FALSE(proxies.down(1, l.now()));
    CHECK(proxies.order(l.now()).front() == 1); // the next connection starts at the other address
}

TEST_CASE("when every proxy address refuses, the tunnel is cut and the reason names each address") {
    pki p;
    const uint16_t a = refusing_port(), c = refusing_port();
    int app[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, app) == 0);
    loop l;
    address_choice proxies({loopback(a), loopback(c)}, 1);
    auto b =
        bridge::client(l, app[1], "db.internal.corp", proxies, {&p.client_ctx, "db.internal.corp", "edge1.test", {}});
    l.add_ticker([&](ms_t now) { return b->tick(now); });
    CHECK(run_until(
        l, [&] { return b->done(); }, 3000));
    char buf[4];
    CHECK(::recv(app[0], buf, sizeof buf, 0) <= 0); // the application's connection is closed
    ::close(app[0]);
    CHECK(b->error().find("no proxy address worked") != std::string::npos);
    CHECK(b->error().find(loopback(a).str()) != std::string::npos);
    CHECK(b->error().find(loopback(c).str()) != std::string::npos);
    CHECK(proxies.down(0, l.now()));
    CHECK(proxies.down(1, l.now()));
}

TEST_CASE("a proxy that drops every young parked connection at once is one failure: the pool dials again soon") {
    pki p;
    uint16_t port = 0;
    int lfd = listen_loopback(port);
    timeval limit{5, 0}; // accept() gives up after this
    REQUIRE(::setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) == 0);
    constexpr size_t pool = 6;
    std::atomic<ms_t> first_parked_ms{0}, dropped_ms{0}, redialled_ms{0};
    std::thread proxy([&] {
        std::vector<std::unique_ptr<server_conn>> parked;
        while (parked.size() < pool) {
            int fd = ::accept(lfd, nullptr, nullptr);
            if (fd < 0) {
                return;
            }
            auto c = std::make_unique<server_conn>(fd, p.server_ctx);
            c->s.set_alpn(service_alpn);
            if (c->handshake()) {
                parked.push_back(std::move(c));
                if (parked.size() == 1) {
                    first_parked_ms = monotonic_ms();
                }
            }
        }
        parked.clear(); // the proxy stops: all closed at once, each well under a second old
        dropped_ms = monotonic_ms();
        int fd = ::accept(lfd, nullptr, nullptr);
        if (fd >= 0) {
            redialled_ms = monotonic_ms();
            ::close(fd);
        }
    });
    bundle b;
    b.dir = "/nonexistent";
    b.cn = "s-hidden";
    b.server_name = "edge1.test";
    loop l;
    address_choice proxies({loopback(port)}, 0);
    {
        service_pool pool_(l, p.client_ctx, b, proxies, pool);
        std::string err;
        REQUIRE_MESSAGE(pool_.set_targets({}, err), err);
        l.add_ticker([&](ms_t now) { return pool_.tick(now); });
        unsigned most_failures = 0; // before the redial (the proxy closes the redial too: that is the next one)
        CHECK(run_until(
            l,
            [&] {
                if (redialled_ms.load() != 0) {
                    return true;
                }
                most_failures = std::max(most_failures, pool_.failures());
                return false;
            },
            4000));
        CHECK(most_failures == 1);
    }
    proxy.join();
    ::close(lfd);
    REQUIRE(dropped_ms.load() != 0);
    // Dropped young (the pool counts a close within a second as a refusal): else the case is not the one tested.
    REQUIRE(dropped_ms.load() - first_parked_ms.load() < 1000);
    REQUIRE(redialled_ms.load() != 0);
    // One failure waits 200 ms; counting each of the six as a failure waited 6.4 s.
    CHECK(redialled_ms.load() - dropped_ms.load() < 1500);
}
