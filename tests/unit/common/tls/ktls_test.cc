// Kernel TLS helpers on any kernel: the probe answers (here: no kTLS, with a
// reason), the known-cipher table admits only AES-GCM, exported keys match
// wolfSSL's getters byte for byte, and records sealed/opened with them the
// way the kernel does (wolfCrypt AES-GCM, RFC 8446 / RFC 5288 nonces) are
// accepted by the peer's wolfSSL. The real kernel path runs in tests/vm.
#include "common/tls/ktls.hh"
#include "common/tls/tls.hh"
#include "tests/support/tls_memory.hh"
#include "control/ca/ca.hh"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>

#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

using namespace zt;
namespace kt = zt::tls::ktls;

namespace {

using side = testing::tls_side;
using testing::consume;
using testing::feed;
using testing::handshake;
using testing::pump;

struct pki {
    control::ca::authority ca = control::ca::authority::create(config::key_type::ecdsa_p256, 30);
    control::ca::issued server = ca.issue_server("ztdns.test", {"127.0.0.1"}, config::key_type::ecdsa_p256, 30);
    control::ca::issued client = ca.issue_endpoint(config::endpoint_kind::client, "alice", config::key_type::ecdsa_p256,
                                                   30, [](const std::string&) { return false; });
};

pki& shared_pki() {
    static pki p;
    return p;
}

/// A finished in-memory mutual-TLS pair that negotiated `suite` (wolfSSL's
/// name) at `version` (WOLFSSL_TLSV1_2 or _3).
struct pair {
    tls::context sctx, cctx;
    side server, client;
    bool ok = false;

    pair(const char* suite, int version) {
        pki& p = shared_pki();
        std::string err;
        sctx = tls::context::create({true, p.server.cert_pem, p.server.key_pem, p.ca.cert_pem(), true, true}, err);
        REQUIRE_MESSAGE(sctx.valid(), err);
        cctx = tls::context::create({false, p.client.cert_pem, p.client.key_pem, p.ca.cert_pem(), true, true}, err);
        REQUIRE_MESSAGE(cctx.valid(), err);
        REQUIRE(server.s.start(sctx, &server.out));
        REQUIRE(client.s.start(cctx, &client.out, "ztdns.test"));
        if (version == WOLFSSL_TLSV1_2) {
            // Not wolfSSL_SetVersion: a client whose context can do TLS 1.3
            // then still treats the server's downgrade sentinel as an attack.
            wolfSSL_set_options(client.s.raw(), WOLFSSL_OP_NO_TLSv1_3);
        }
        REQUIRE(wolfSSL_set_cipher_list(client.s.raw(), suite) == WOLFSSL_SUCCESS);
        ok = handshake(server, client);
        if (!ok) {
            MESSAGE("handshake failed: server: " << std::string(server.s.error_string())
                                                 << "; client: " << std::string(client.s.error_string()));
        }
    }

    /// Sends `n` bytes of `fill` from a to b through wolfSSL; true when b read them.
    static bool send(side& a, side& b, size_t n, uint8_t fill) {
        std::vector<std::byte> data(n, std::byte{fill});
        size_t done = 0;
        if (a.s.write(data, done) != tls::status::done || done != n) {
            return false;
        }
        pump(a, b);
        std::vector<std::byte> got;
        std::array<std::byte, 20000> buf;
        while (got.size() < n) {
            feed(b);
            size_t r = 0;
            auto st = b.s.read(buf, r);
            consume(b);
            if (st != tls::status::done) {
                return false;
            }
            got.insert(got.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(r));
        }
        return got == data;
    }
};

uint64_t be64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
        v = v << 8 | p[i];
    }
    return v;
}

/// AES-GCM with wolfCrypt, as the kernel's gcm(aes).
struct gcm {
    Aes aes;
    gcm(const uint8_t* key, size_t key_size) {
        REQUIRE(wc_AesInit(&aes, nullptr, INVALID_DEVID) == 0);
        REQUIRE(wc_AesGcmSetKey(&aes, key, static_cast<word32>(key_size)) == 0);
    }
    ~gcm() { wc_AesFree(&aes); }
};

/// The 12-byte nonce the kernel uses for record `seq`: TLS 1.3 = (salt|iv)
/// XOR seq (RFC 8446 5.3); TLS 1.2 = salt | explicit nonce (RFC 5288).
std::array<uint8_t, 12> nonce_for(const kt::direction_keys& d, bool tls13, const uint8_t* explicit_iv, uint64_t seq) {
    std::array<uint8_t, 12> n{};
    std::memcpy(n.data(), d.salt, 4);
    if (tls13) {
        std::memcpy(n.data() + 4, d.iv, 8);
        for (int i = 0; i < 8; ++i) {
            n[4 + static_cast<size_t>(i)] ^= static_cast<uint8_t>(seq >> (56 - 8 * i));
        }
    } else {
        std::memcpy(n.data() + 4, explicit_iv, 8);
    }
    return n;
}

/// Seals one application-data record with exported tx keys, as the kernel would.
std::vector<std::byte> seal(const kt::session_keys& k, uint64_t seq, const std::string& plain) {
    const bool tls13 = k.c->tls_version == 0x0304;
    gcm g(k.tx.key, k.c->key_size);
    std::vector<uint8_t> rec(5);
    std::vector<uint8_t> in(plain.begin(), plain.end());
    uint8_t explicit_iv[8];
    std::memcpy(explicit_iv, k.tx.iv, 8); // the kernel's first explicit nonce is the iv it was given
    if (tls13) {
        in.push_back(kt::record_application_data); // inner content type
    }
    const size_t body = (tls13 ? 0 : 8) + in.size() + 16;
    rec[0] = kt::record_application_data;
    rec[1] = 3;
    rec[2] = 3;
    rec[3] = static_cast<uint8_t>(body >> 8);
    rec[4] = static_cast<uint8_t>(body);
    std::vector<uint8_t> aad;
    if (tls13) {
        aad.assign(rec.begin(), rec.end());
    } else {
        aad.resize(13);
        for (int i = 0; i < 8; ++i) {
            aad[static_cast<size_t>(i)] = static_cast<uint8_t>(seq >> (56 - 8 * i));
        }
        aad[8] = kt::record_application_data;
        aad[9] = 3;
        aad[10] = 3;
        aad[11] = static_cast<uint8_t>(plain.size() >> 8);
        aad[12] = static_cast<uint8_t>(plain.size());
        rec.insert(rec.end(), explicit_iv, explicit_iv + 8);
    }
    auto n = nonce_for(k.tx, tls13, explicit_iv, seq);
    std::vector<uint8_t> ct(in.size()), tag(16);
    REQUIRE(wc_AesGcmEncrypt(&g.aes, ct.data(), in.data(), static_cast<word32>(in.size()), n.data(), 12, tag.data(), 16,
                             aad.data(), static_cast<word32>(aad.size())) == 0);
    rec.insert(rec.end(), ct.begin(), ct.end());
    rec.insert(rec.end(), tag.begin(), tag.end());
    std::vector<std::byte> out(rec.size());
    std::memcpy(out.data(), rec.data(), rec.size());
    return out;
}

/// Opens one application-data record with exported rx keys; empty on failure.
std::string open(const kt::session_keys& k, uint64_t seq, std::span<const std::byte> rec_bytes) {
    const bool tls13 = k.c->tls_version == 0x0304;
    const auto* rec = reinterpret_cast<const uint8_t*>(rec_bytes.data());
    REQUIRE(rec_bytes.size() > 5 + 16);
    const size_t body = static_cast<size_t>(rec[3]) << 8 | rec[4];
    REQUIRE(rec_bytes.size() == 5 + body);
    gcm g(k.rx.key, k.c->key_size);
    const uint8_t* explicit_iv = rec + 5;
    const uint8_t* ct = rec + 5 + (tls13 ? 0 : 8);
    const size_t ct_len = body - (tls13 ? 0 : 8) - 16;
    std::vector<uint8_t> aad;
    if (tls13) {
        aad.assign(rec, rec + 5);
    } else {
        aad.resize(13);
        for (int i = 0; i < 8; ++i) {
            aad[static_cast<size_t>(i)] = static_cast<uint8_t>(seq >> (56 - 8 * i));
        }
        aad[8] = rec[0];
        aad[9] = 3;
        aad[10] = 3;
        aad[11] = static_cast<uint8_t>(ct_len >> 8);
        aad[12] = static_cast<uint8_t>(ct_len);
    }
    auto n = nonce_for(k.rx, tls13, explicit_iv, seq);
    std::vector<uint8_t> plain(ct_len);
    if (wc_AesGcmDecrypt(&g.aes, plain.data(), ct, static_cast<word32>(ct_len), n.data(), 12, ct + ct_len, 16,
                         aad.data(), static_cast<word32>(aad.size())) != 0) {
        return {};
    }
    if (tls13) {
        REQUIRE(!plain.empty());
        CHECK(plain.back() == kt::record_application_data);
        plain.pop_back();
    }
    return std::string(plain.begin(), plain.end());
}

struct config_case {
    const char* label;
    const char* suite;
    int version;
    uint16_t iana;
};

constexpr config_case eligible_cases[] = {
    {"TLS 1.3 AES-128-GCM", "TLS13-AES128-GCM-SHA256", WOLFSSL_TLSV1_3, 0x1301},
    {"TLS 1.3 AES-256-GCM", "TLS13-AES256-GCM-SHA384", WOLFSSL_TLSV1_3, 0x1302},
    {"TLS 1.2 ECDHE-ECDSA-AES128-GCM", "ECDHE-ECDSA-AES128-GCM-SHA256", WOLFSSL_TLSV1_2, 0xC02B},
    {"TLS 1.2 ECDHE-ECDSA-AES256-GCM", "ECDHE-ECDSA-AES256-GCM-SHA384", WOLFSSL_TLSV1_2, 0xC02C},
};

} // namespace

TEST_CASE("probe answers with a reason and does not crash") {
    kt::probe_result r = kt::probe();
    CHECK_FALSE(r.reason.empty());
    MESSAGE("kTLS probe: " << std::string(r.available ? "available" : "unavailable") << ": " << r.reason);
    if (!r.available) {
        CHECK(r.reason.find("TCP_ULP") != std::string::npos);
    }
    // A second probe gives the same answer (start-up may call it again).
    CHECK(kt::probe().available == r.available);
}

TEST_CASE("the known-cipher table holds only AES-GCM for TLS 1.2 and 1.3") {
    for (const kt::cipher& c : kt::known_ciphers()) {
        CHECK((c.tls_version == 0x0304 || c.tls_version == 0x0303));
        CHECK((c.key_size == 16 || c.key_size == 32));
        CHECK(std::string(c.name).find("GCM") != std::string::npos);
    }
}

TEST_CASE("eligible: AES-GCM sessions yes, ChaCha20 no, unfinished no") {
    CHECK_FALSE(kt::eligible(nullptr));
    for (const auto& cc : eligible_cases) {
        const std::string label = cc.label;
        CAPTURE(label);
        pair p(cc.suite, cc.version);
        REQUIRE(p.ok);
        CHECK(wolfSSL_get_current_cipher_suite(p.server.s.raw()) == cc.iana);
        CHECK(kt::eligible(p.server.s.raw()));
        CHECK(kt::eligible(p.client.s.raw()));
        const kt::cipher* c = kt::find_cipher(p.server.s.raw());
        REQUIRE(c != nullptr);
        CHECK(c->suite == cc.iana);
    }
    {
        pair p("TLS13-CHACHA20-POLY1305-SHA256", WOLFSSL_TLSV1_3);
        REQUIRE(p.ok);
        CHECK(std::string(p.server.s.cipher()).find("CHACHA20") != std::string::npos);
        CHECK_FALSE(kt::eligible(p.server.s.raw()));
        CHECK_FALSE(kt::eligible(p.client.s.raw()));
        kt::session_keys k = kt::export_keys(p.server.s.raw(), true);
        CHECK_FALSE(k.ok());
        CHECK(k.error != nullptr);
    }
    {
        pair p("ECDHE-ECDSA-CHACHA20-POLY1305", WOLFSSL_TLSV1_2);
        REQUIRE(p.ok);
        CHECK_FALSE(kt::eligible(p.server.s.raw()));
    }
    {
        // A session before its handshake.
        pki& pk = shared_pki();
        std::string err;
        auto sctx =
            tls::context::create({true, pk.server.cert_pem, pk.server.key_pem, pk.ca.cert_pem(), true, false}, err);
        side s;
        REQUIRE(s.s.start(sctx, &s.out));
        CHECK_FALSE(kt::eligible(s.s.raw()));
    }
}

TEST_CASE("exported keys have the documented layout (against wolfSSL's getters)") {
    for (const auto& cc : eligible_cases) {
        const std::string label = cc.label;
        CAPTURE(label);
        pair p(cc.suite, cc.version);
        REQUIRE(p.ok);
        // Some records each way, so that neither sequence is still 0.
        for (int i = 0; i < 3; ++i) {
            REQUIRE(pair::send(p.client, p.server, 100 + static_cast<size_t>(i), 'c'));
        }
        REQUIRE(pair::send(p.server, p.client, 50, 's'));
        const bool tls13 = cc.version == WOLFSSL_TLSV1_3;
        const size_t ks = tls13 ? (cc.iana == 0x1301 ? 16 : 32) : (cc.iana == 0xC02B ? 16 : 32);

        for (bool server_side : {true, false}) {
            CAPTURE(server_side);
            WOLFSSL* ssl = server_side ? p.server.s.raw() : p.client.s.raw();
            kt::session_keys k = kt::export_keys(ssl, server_side);
            REQUIRE_MESSAGE(k.ok(), k.error);
            CHECK(k.c->key_size == ks);
            word64 seq = 0, peer_seq = 0;
            wolfSSL_GetSequenceNumber(ssl, &seq);
            wolfSSL_GetPeerSequenceNumber(ssl, &peer_seq);
            CHECK(k.tx.seq == seq);
            CHECK(k.rx.seq == peer_seq);
            CHECK(be64(k.tx.rec_seq) == seq);
            CHECK(be64(k.rx.rec_seq) == peer_seq);
            // The server sent 1 record, the client 3 (TLS 1.2: + Finished at 0).
            CHECK(k.tx.seq == (server_side ? 1u : 3u) + (tls13 ? 0u : 1u));
            CHECK(k.rx.seq == (server_side ? 3u : 1u) + (tls13 ? 0u : 1u));
            const unsigned char* tx_key = server_side ? wolfSSL_GetServerWriteKey(ssl) : wolfSSL_GetClientWriteKey(ssl);
            const unsigned char* tx_iv = server_side ? wolfSSL_GetServerWriteIV(ssl) : wolfSSL_GetClientWriteIV(ssl);
            const unsigned char* rx_key = server_side ? wolfSSL_GetClientWriteKey(ssl) : wolfSSL_GetServerWriteKey(ssl);
            const unsigned char* rx_iv = server_side ? wolfSSL_GetClientWriteIV(ssl) : wolfSSL_GetServerWriteIV(ssl);
            CHECK(std::memcmp(k.tx.key, tx_key, ks) == 0);
            CHECK(std::memcmp(k.rx.key, rx_key, ks) == 0);
            CHECK(std::memcmp(k.tx.salt, tx_iv, 4) == 0);
            CHECK(std::memcmp(k.rx.salt, rx_iv, 4) == 0);
            if (tls13) {
                CHECK(std::memcmp(k.tx.iv, tx_iv + 4, 8) == 0);
                CHECK(std::memcmp(k.rx.iv, rx_iv + 4, 8) == 0);
            } else {
                CHECK(be64(k.tx.iv) == seq);
                CHECK(be64(k.rx.iv) == peer_seq);
            }
            CHECK(std::memcmp(k.tx.key, k.rx.key, ks) != 0);
        }
        // One side's tx is the other side's rx.
        kt::session_keys s = kt::export_keys(p.server.s.raw(), true);
        kt::session_keys c = kt::export_keys(p.client.s.raw(), false);
        CHECK(std::memcmp(s.tx.key, c.rx.key, ks) == 0);
        CHECK(std::memcmp(s.rx.key, c.tx.key, ks) == 0);
        CHECK(s.tx.seq == c.rx.seq);
        CHECK(s.rx.seq == c.tx.seq);
        // Wrong side claimed.
        CHECK_FALSE(kt::export_keys(p.server.s.raw(), false).ok());
        // Moving wipes the source.
        kt::session_keys moved(std::move(s));
        CHECK(moved.ok());
        CHECK(std::all_of(std::begin(s.tx.key), std::end(s.tx.key), [](uint8_t b) { return b == 0; }));
    }
}

TEST_CASE("exported keys open and seal records the way the kernel does") {
    for (const auto& cc : eligible_cases) {
        const std::string label = cc.label;
        CAPTURE(label);
        pair p(cc.suite, cc.version);
        REQUIRE(p.ok);
        REQUIRE(pair::send(p.client, p.server, 300, 'a'));
        REQUIRE(pair::send(p.server, p.client, 200, 'b'));
        kt::session_keys k = kt::export_keys(p.server.s.raw(), true);
        REQUIRE(k.ok());

        // Receive: the client's next record opens with the exported rx state.
        const std::string up = "from the client, after the switch";
        size_t n = 0;
        REQUIRE(p.client.s.write(std::as_bytes(std::span(up)), n) == tls::status::done);
        std::span<const std::byte> rec(p.client.out.data, p.client.out.length);
        CHECK(open(k, k.rx.seq, rec) == up);
        // The same record with a sequence one off does not (the EBADMSG case).
        CHECK(open(k, k.rx.seq + 1, rec).empty());
        p.client.out.length = 0;

        // Send: two records sealed with the exported tx state reach the client.
        for (uint64_t i = 0; i < 2; ++i) {
            const std::string down = "from the kernel, record " + std::to_string(i);
            kt::session_keys kk = kt::export_keys(p.server.s.raw(), true);
            if (cc.version == WOLFSSL_TLSV1_2) {
                // The kernel advances its explicit nonce with the sequence.
                uint64_t v = kk.tx.seq + i;
                for (int b = 7; b >= 0; --b, v >>= 8) {
                    kk.tx.iv[b] = static_cast<uint8_t>(v);
                }
            }
            auto sealed = seal(kk, kk.tx.seq + i, down);
            p.client.inbox.insert(p.client.inbox.end(), sealed.begin(), sealed.end());
            feed(p.client);
            std::array<std::byte, 256> buf;
            REQUIRE(p.client.s.read(buf, n) == tls::status::done);
            consume(p.client);
            CHECK(std::string(reinterpret_cast<const char*>(buf.data()), n) == down);
        }
    }
}

TEST_CASE("install on a kernel without kTLS falls back and says why") {
    if (kt::probe().available) {
        MESSAGE("skipped: this kernel has kTLS (the VM tier tests install)");
        return;
    }
    pair p("TLS13-AES128-GCM-SHA256", WOLFSSL_TLSV1_3);
    REQUIRE(p.ok);
    int l = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&sa), sl) == 0);
    REQUIRE(::listen(l, 1) == 0);
    REQUIRE(::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &sl) == 0);
    int a = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(a, reinterpret_cast<sockaddr*>(&sa), sl) == 0);
    int b = ::accept(l, nullptr, nullptr);
    REQUIRE(b >= 0);
    std::string err;
    CHECK(kt::install(b, p.server.s.raw(), true, err) == kt::install_status::fallback);
    CHECK(err.find("TCP_ULP") != std::string::npos);
    // Not eligible: fallback before any syscall.
    pair q("TLS13-CHACHA20-POLY1305-SHA256", WOLFSSL_TLSV1_3);
    REQUIRE(q.ok);
    err.clear();
    CHECK(kt::install(b, q.server.s.raw(), true, err) == kt::install_status::fallback);
    CHECK(err.find("table") != std::string::npos);
    // The socket still carries plain bytes; recv_record on it sees "data".
    REQUIRE(::send(a, "hi", 2, 0) == 2);
    char buf[8];
    uint8_t type = 0;
    CHECK(kt::recv_record(b, buf, sizeof buf, type) == 2);
    CHECK(type == kt::record_application_data);
    ::close(a);
    ::close(b);
    ::close(l);
}

TEST_CASE("classify non-data records") {
    const std::byte close_notify[] = {std::byte{1}, std::byte{0}};
    const std::byte fatal[] = {std::byte{2}, std::byte{40}};
    const std::byte key_update[] = {std::byte{24}, std::byte{0}, std::byte{0}, std::byte{1}, std::byte{0}};
    const std::byte ticket[] = {std::byte{4}, std::byte{0}};
    CHECK(kt::classify(23, {}) == kt::record_kind::data);
    CHECK(kt::classify(21, close_notify) == kt::record_kind::close_notify);
    CHECK(kt::classify(21, fatal) == kt::record_kind::alert);
    CHECK(kt::classify(21, std::span(close_notify).first(1)) == kt::record_kind::malformed);
    CHECK(kt::classify(22, key_update) == kt::record_kind::key_update);
    CHECK(kt::classify(22, ticket) == kt::record_kind::handshake);
    CHECK(kt::classify(22, {}) == kt::record_kind::malformed);
    CHECK(kt::classify(20, close_notify) == kt::record_kind::malformed);
}

TEST_CASE("record_tracker follows framing across arbitrary splits") {
    // Three records: bodies of 3, 0 and 300 bytes.
    std::vector<std::byte> stream;
    for (uint16_t len : {3, 0, 300}) {
        stream.push_back(std::byte{23});
        stream.push_back(std::byte{3});
        stream.push_back(std::byte{3});
        stream.push_back(std::byte(len >> 8));
        stream.push_back(std::byte(len & 0xff));
        stream.insert(stream.end(), len, std::byte{0xaa});
    }
    for (size_t step : {1, 2, 5, 7, 64, 1000}) {
        CAPTURE(step);
        kt::record_tracker t;
        CHECK(t.needed() == 0);
        for (size_t off = 0; off < stream.size(); off += step) {
            t.consume(std::span(stream).subspan(off, std::min(step, stream.size() - off)));
        }
        CHECK(t.needed() == 0);
        CHECK(t.records() == 3);
    }
    kt::record_tracker t;
    t.consume(std::span(stream).first(2));
    CHECK(t.needed() == 3); // rest of the header
    t.consume(std::span(stream).subspan(2, 3));
    CHECK(t.needed() == 3); // the body
    t.consume(std::span(stream).subspan(5, 3 + 5 + 5 + 10));
    CHECK(t.needed() == 290);
    CHECK(t.records() == 2);
}
