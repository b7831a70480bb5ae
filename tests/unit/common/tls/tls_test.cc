// TLS sessions over in-memory buffers: mutual TLS 1.3 with certificates from
// our CA, the peer CN read after the handshake, data both ways, refusals.
#include "common/tls/tls.hh"
#include "tests/support/tls_memory.hh"
#include "control/ca/ca.hh"

#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

using namespace zt;

namespace {

using side = testing::tls_side;
using testing::consume;
using testing::feed;
using testing::handshake;
using testing::pump;

struct pki {
    control::ca::authority ca = control::ca::authority::create(config::key_type::ecdsa_p256, 30);
    control::ca::issued server = ca.issue_server("ztdns.test", {"127.0.0.1"}, config::key_type::ecdsa_p256, 30);
    control::ca::issued client = ca.issue_endpoint(config::endpoint_kind::client, "alice",
                                                   config::key_type::ecdsa_p256, 30, [](const std::string&) { return false; });
};

tls::context server_ctx(const pki& p) {
    std::string err;
    auto c = tls::context::create({true, p.server.cert_pem, p.server.key_pem, p.ca.cert_pem(), true, false}, err);
    REQUIRE_MESSAGE(c.valid(), err);
    return c;
}

} // namespace

TEST_CASE("this wolfSSL has AES-NI (the scripts/setup build)") {
#ifdef ZT_SYSTEM_WOLFSSL
    MESSAGE("skipped: built with -Dsystem_wolfssl=true");
#else
    CHECK(tls::has_aesni());
#endif
}

TEST_CASE("mutual TLS 1.3 in memory: handshake, CN, data both ways") {
    pki p;
    auto sctx = server_ctx(p);
    std::string err;
    auto cctx = tls::context::create({false, p.client.cert_pem, p.client.key_pem, p.ca.cert_pem(), true, false}, err);
    REQUIRE_MESSAGE(cctx.valid(), err);
    side server, client;
    REQUIRE(server.s.start(sctx, &server.out));
    REQUIRE(client.s.start(cctx, &client.out, "ztdns.test"));
    REQUIRE(handshake(server, client));
    CHECK(server.s.peer_cn() == p.client.cn);
    CHECK(std::string(server.s.version()) == "TLSv1.3");

    const char msg[] = "hello through TLS";
    size_t n = 0;
    REQUIRE(client.s.write(std::as_bytes(std::span(msg, sizeof msg)), n) == tls::status::done);
    CHECK(n == sizeof msg);
    pump(client, server);
    feed(server);
    std::array<std::byte, 256> plain;
    REQUIRE(server.s.read(plain, n) == tls::status::done);
    consume(server);
    CHECK(n == sizeof msg);
    CHECK(std::memcmp(plain.data(), msg, n) == 0);

    client.s.shutdown();
    pump(client, server);
    feed(server);
    CHECK(server.s.read(plain, n) == tls::status::closed);
}

TEST_CASE("a client without a certificate is refused") {
    pki p;
    auto sctx = server_ctx(p);
    std::string err;
    auto cctx = tls::context::create({false, "", "", p.ca.cert_pem(), true, false}, err);
    REQUIRE(cctx.valid());
    side server, client;
    REQUIRE(server.s.start(sctx, &server.out));
    REQUIRE(client.s.start(cctx, &client.out));
    CHECK_FALSE(handshake(server, client));
}

TEST_CASE("a client certificate from another CA is refused") {
    pki p, other;
    auto sctx = server_ctx(p);
    std::string err;
    auto cctx = tls::context::create({false, other.client.cert_pem, other.client.key_pem, p.ca.cert_pem(), true, false}, err);
    REQUIRE(cctx.valid());
    side server, client;
    REQUIRE(server.s.start(sctx, &server.out));
    REQUIRE(client.s.start(cctx, &client.out));
    CHECK_FALSE(handshake(server, client));
    CHECK(server.s.peer_cn().empty());
}

TEST_CASE("context creation names what is wrong") {
    pki p;
    std::string err;
    CHECK_FALSE(tls::context::create({true, "junk", p.server.key_pem, p.ca.cert_pem(), true, false}, err).valid());
    CHECK(err.find("certificate") != std::string::npos);
    CHECK_FALSE(tls::context::create({true, p.server.cert_pem, p.client.key_pem, p.ca.cert_pem(), true, false}, err).valid());
    CHECK(err == "the private key does not belong to the certificate");
}
