// TLS sessions over in-memory buffers: mutual TLS 1.3 with certificates from
// our CA, the peer CN read after the handshake, data both ways, refusals.
#include "common/tls/tls.hh"
#include "tests/support/tls_memory.hh"
#include "control/ca/ca.hh"

#include <doctest/doctest.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <utility>
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

namespace {
std::string sha256_hex(const std::string& data, size_t chunk) {
    wc_Sha256 sha;
    REQUIRE(wc_InitSha256(&sha) == 0);
    int failed = 0;
    for (size_t at = 0; at < data.size(); at += chunk) {
        size_t n = std::min(chunk, data.size() - at);
        failed |= wc_Sha256Update(&sha, reinterpret_cast<const byte*>(data.data() + at), static_cast<word32>(n));
    }
    REQUIRE(failed == 0);
    std::array<byte, WC_SHA256_DIGEST_SIZE> digest{};
    REQUIRE(wc_Sha256Final(&sha, digest.data()) == 0);
    wc_Sha256Free(&sha);
    return fmt::format("{:02x}", fmt::join(digest, ""));
}
} // namespace

// scripts/setup patches SHA-256 with the CPU's SHA extensions into wolfSSL
// (scripts/wolfssl/sha256-shani.patch). Both ends of a test handshake use
// the same code, so a wrong digest would not show there: check known answers
// (FIPS 180-2 examples, the last one computed with coreutils' sha256sum),
// fed in pieces that take every path (partial buffer, one block, many).
TEST_CASE("SHA-256 gives the known answers, whole and in pieces") {
    // Which transform this CPU runs (the patch picks SHA-NI with AVX).
    unsigned a = 0, b = 0, c = 0, d = 0;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    MESSAGE(std::string((b >> 29) & 1 ? "this CPU has SHA-NI: the patched transform is tested"
                                      : "this CPU has no SHA-NI: wolfSSL's own transform is tested"));
    std::string pattern(4096, '\0');
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>(i * 7 % 251);
    const std::pair<std::string, const char*> known[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {std::string(1000000, 'a'), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
        {pattern, "9141107b6ed1422839ed97f4674de82ae742ec2f8556c3df948da06930f94393"},
    };
    for (const auto& [data, want] : known) {
        for (size_t chunk : {size_t{1}, size_t{55}, size_t{64}, size_t{65}, size_t{1000}, size_t{1} << 20}) {
            CAPTURE(data.size());
            CAPTURE(chunk);
            CHECK(sha256_hex(data, chunk) == want);
        }
    }
}

// scripts/setup builds wolfSSL with FP_ECC: from a key's second use on a
// thread, its multiplications use a precomputed table (a client that
// reconnects). The table path must refuse what the plain path refuses.
TEST_CASE("a key verified often, from its cached table, still refuses wrong signatures") {
#if !defined(FP_ECC) && !defined(ZT_SYSTEM_WOLFSSL)
    FAIL("wolfSSL built without FP_ECC: scripts/setup's build has it");
#endif
    WC_RNG rng;
    REQUIRE(wc_InitRng(&rng) == 0);
    ecc_key key, other;
    wc_ecc_init(&key);
    wc_ecc_init(&other);
    REQUIRE(wc_ecc_make_key(&rng, 32, &key) == 0);
    REQUIRE(wc_ecc_make_key(&rng, 32, &other) == 0);
    byte hash[32] = {1, 2, 3}, wrong_hash[32] = {1, 2, 4};
    byte sig[80], other_sig[80];
    word32 len = sizeof sig, other_len = sizeof other_sig;
    REQUIRE(wc_ecc_sign_hash(hash, sizeof hash, sig, &len, &rng, &key) == 0);
    REQUIRE(wc_ecc_sign_hash(hash, sizeof hash, other_sig, &other_len, &rng, &other) == 0);
    auto verifies = [&](const byte* s, word32 n, const byte* h) {
        int ok = 0;
        return wc_ecc_verify_hash(s, n, h, sizeof hash, &ok, &key) == 0 && ok == 1;
    };
    for (int round = 0; round < 4; ++round) {
        CAPTURE(round);
        CHECK(verifies(sig, len, hash));
        CHECK_FALSE(verifies(sig, len, wrong_hash));
        CHECK_FALSE(verifies(other_sig, other_len, hash));
    }
    wc_ecc_free(&key);
    wc_ecc_free(&other);
    wc_FreeRng(&rng);
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
    // The proxy routes by this (wolfSSL built with WOLFSSL_ALWAYS_KEEP_SNI:
    // without it a server that names no SNI of its own keeps none).
    CHECK(server.s.sni() == "ztdns.test");

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

// Our wolfSSL keeps only the chosen suite's hash of the transcript once the
// ServerHello is out (scripts/wolfssl/tls13-one-transcript.patch): each suite
// hash, on both sides, and after a HelloRetryRequest restarts the transcript.
TEST_CASE("mutual TLS 1.3 with each suite's transcript hash, with and without a HelloRetryRequest") {
    pki p;
    auto sctx = server_ctx(p);
    auto cctx = client_ctx(p, p.client.cert_pem);
    const std::pair<std::string, std::string> suites[] = {
        {"TLS13-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"},
        {"TLS13-AES256-GCM-SHA384", "TLS_AES_256_GCM_SHA384"},
        {"TLS13-CHACHA20-POLY1305-SHA256", "TLS_CHACHA20_POLY1305_SHA256"}};
    for (const auto& [suite, iana] : suites) {
        for (bool retry : {false, true}) {
            CAPTURE(suite);
            CAPTURE(retry);
            side server, client;
            REQUIRE(server.s.start(sctx, &server.out));
            REQUIRE(client.s.start(cctx, &client.out, "ztdns.test"));
            REQUIRE(wolfSSL_set_cipher_list(client.s.raw(), suite.c_str()) == WOLFSSL_SUCCESS);
            if (retry) {
                // No key share offered: the server must ask again for one.
                REQUIRE(wolfSSL_NoKeyShares(client.s.raw()) == WOLFSSL_SUCCESS);
            }
            REQUIRE(handshake(server, client));
            CHECK(std::string(server.s.cipher()) == iana);
            CHECK(std::string(client.s.cipher()) == iana);
            CHECK(server.s.peer_cn() == p.client.cn);

            // Application keys come from the transcript: data both ways
            // proves both sides hashed the same messages.
            std::array<std::byte, 256> plain;
            for (side* from : {&client, &server}) {
                side* to = from == &client ? &server : &client;
                const char msg[] = "through the negotiated keys";
                size_t n = 0;
                REQUIRE(from->s.write(std::as_bytes(std::span(msg, sizeof msg)), n) == tls::status::done);
                pump(*from, *to);
                feed(*to);
                REQUIRE(to->s.read(plain, n) == tls::status::done);
                consume(*to);
                CHECK(n == sizeof msg);
                CHECK(std::memcmp(plain.data(), msg, n) == 0);
            }
        }
    }
}

// Our wolfSSL runs the DRBG's known-answer test once per process, not at
// every RNG (scripts/wolfssl/rng-kat-once.patch): every RNG is still seeded
// on its own, so two of them never agree.
TEST_CASE("every RNG is seeded on its own") {
    std::array<std::array<unsigned char, 32>, 4> out{};
    for (auto& o : out) {
        WC_RNG rng;
        REQUIRE(wc_InitRng(&rng) == 0);
        REQUIRE(wc_RNG_GenerateBlock(&rng, o.data(), static_cast<word32>(o.size())) == 0);
        wc_FreeRng(&rng);
    }
    for (size_t i = 0; i < out.size(); ++i) {
        CHECK(std::any_of(out[i].begin(), out[i].end(), [](unsigned char b) { return b != 0; }));
        for (size_t j = i + 1; j < out.size(); ++j) {
            CHECK(out[i] != out[j]);
        }
    }
}

// scripts/wolfssl/send-alert.patch: the data plane tells a verified client
// why it refuses it.
TEST_CASE("a server refusing a verified client sends the alert, and the client reads why") {
#ifdef ZT_SYSTEM_WOLFSSL
    MESSAGE("skipped: Debian's wolfSSL cannot send an alert of ours (no scripts/wolfssl/send-alert.patch)");
    return;
#endif
    pki p;
    auto sctx = server_ctx(p);
    auto cctx = client_ctx(p, p.client.cert_pem);
    for (auto why : {tls::refusal::revoked, tls::refusal::access_denied}) {
        side server, client;
        REQUIRE(server.s.start(sctx, &server.out));
        REQUIRE(client.s.start(cctx, &client.out, "ztdns.test"));
        REQUIRE(handshake(server, client));
        CHECK(client.s.peer_alert() == -1);
        server.s.refuse(why);
        REQUIRE(server.out.length > 0);
        pump(server, client);
        feed(client);
        std::array<std::byte, 64> plain;
        size_t n = 0;
        CHECK(client.s.read(plain, n) == tls::status::failed);
        CHECK(client.s.peer_alert() == static_cast<int>(why));
    }
    CHECK(std::string(tls::alert_phrase(44)) == "certificate revoked");
    CHECK(std::string(tls::alert_phrase(49)) == "access denied");
    CHECK(tls::alert_phrase(0) == nullptr);
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
#ifndef ZT_SYSTEM_WOLFSSL // Debian's wolfSSL does not compare an ECC key with the certificate (bundle_test says more)
    CHECK_FALSE(tls::context::create({true, p.server.cert_pem, p.client.key_pem, p.ca.cert_pem(), true, false}, err).valid());
    CHECK(err == "the private key does not belong to the certificate");
#endif
}
