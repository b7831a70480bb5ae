// TLS sessions over in-memory buffers: mutual TLS 1.3 with certificates from
// our CA, the peer CN read after the handshake, data both ways, refusals.
#include "common/tls/tls.hh"
#include "tests/support/tls_memory.hh"
#include "control/ca/ca.hh"

#include <doctest/doctest.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include <algorithm>
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

tls::context client_ctx(const pki& p, const std::string& cert_pem) {
    std::string err;
    auto c = tls::context::create({false, cert_pem, p.client.key_pem, p.ca.cert_pem(), true, false}, err);
    REQUIRE_MESSAGE(c.valid(), err);
    return c;
}

bool connect_once(const tls::context& sctx, const tls::context& cctx) {
    side server, client;
    REQUIRE(server.s.start(sctx, &server.out));
    REQUIRE(client.s.start(cctx, &client.out, "ztdns.test"));
    return handshake(server, client);
}

/// The certificate with one byte changed: `from_end` bytes before the end of
/// the DER (inside the signature), or the first occurrence of `find` in it.
std::string tampered(const std::string& pem, size_t from_end, std::string_view find = {}) {
    std::vector<unsigned char> der(pem.size());
    int n = wc_CertPemToDer(reinterpret_cast<const unsigned char*>(pem.data()), static_cast<int>(pem.size()),
                            der.data(), static_cast<int>(der.size()), CERT_TYPE);
    REQUIRE(n > 0);
    der.resize(static_cast<size_t>(n));
    if (find.empty()) {
        der[der.size() - from_end] ^= 0x01;
    } else {
        auto at = std::search(der.begin(), der.end(), find.begin(), find.end());
        REQUIRE(at != der.end());
        *at ^= 0x01;
    }
    std::vector<unsigned char> out(der.size() * 2 + 128);
    int m = wc_DerToPem(der.data(), static_cast<word32>(der.size()), out.data(), static_cast<word32>(out.size()),
                        CERT_TYPE);
    REQUIRE(m > 0);
    return std::string(reinterpret_cast<const char*>(out.data()), static_cast<size_t>(m));
}

} // namespace

TEST_CASE("a repeat certificate's CA signature is verified once per thread, CertificateVerify every time") {
    if (!tls::verify_memo_available()) {
        MESSAGE("skipped: this wolfSSL has no PK callbacks (-Dsystem_wolfssl)");
        return;
    }
    pki p;
    auto sctx = server_ctx(p);
    auto cctx = client_ctx(p, p.client.cert_pem);
    tls::verify_memo_stats s0 = tls::verify_memo();
    REQUIRE(connect_once(sctx, cctx));
    tls::verify_memo_stats s1 = tls::verify_memo();
    // The server checks the client's certificate, the client the server's:
    // two CA signatures, both new. The CertificateVerify signatures are made
    // with the peers' own keys and never go through the memo.
    CHECK(s1.misses - s0.misses == 2);
    CHECK(s1.hits - s0.hits == 0);
    REQUIRE(connect_once(sctx, cctx));
    tls::verify_memo_stats s2 = tls::verify_memo();
    CHECK(s2.hits - s1.hits == 2);
    CHECK(s2.misses - s1.misses == 0);
}

TEST_CASE("after the genuine certificate is memoized, altered copies are still refused") {
    pki p;
    auto sctx = server_ctx(p);
    auto genuine = client_ctx(p, p.client.cert_pem);
    REQUIRE(connect_once(sctx, genuine));
    REQUIRE(connect_once(sctx, genuine));
    SUBCASE("a changed signature byte") {
        CHECK_FALSE(connect_once(sctx, client_ctx(p, tampered(p.client.cert_pem, 2))));
    }
    SUBCASE("a changed byte in the signed body (the CN)") {
        CHECK_FALSE(connect_once(sctx, client_ctx(p, tampered(p.client.cert_pem, 0, p.client.cn))));
    }
    SUBCASE("the genuine one still passes") {
        CHECK(connect_once(sctx, genuine));
    }
}

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
