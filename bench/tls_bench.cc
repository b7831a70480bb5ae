// Micro-benchmarks of what one new mutual-TLS connection costs the server in
// user space, without sockets: the server's side of a TLS 1.3 handshake with a
// client certificate (ECDSA P-256 certificates from our CA; the client's key
// share P-256, as wolfSSL clients send it, or X25519, as OpenSSL clients do),
// and the public-key operations it is made of, and the AES-GCM of one 16 KiB
// record (the proxy's per-byte crypto). Only the server's handshake calls are
// timed (manual time), so these are the floor under bench/run's "server CPU
// per new connection", which adds the kernel's TCP work.
#include "common/tls/tls.hh"
#include "control/ca/ca.hh"
#include "tests/support/tls_memory.hh"

#include <benchmark/benchmark.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/curve25519.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace zt;

namespace {

struct pki {
    control::ca::authority ca = control::ca::authority::create(config::key_type::ecdsa_p256, 30);
    control::ca::issued server = ca.issue_server("edge1.test", {"127.0.0.1"}, config::key_type::ecdsa_p256, 30);
    control::ca::issued client = ca.issue_endpoint(config::endpoint_kind::client, "alice", config::key_type::ecdsa_p256,
                                                   30, [](const std::string&) { return false; });
    tls::context server_ctx, client_ctx;
    pki() {
        tls::init();
        std::string err;
        server_ctx = tls::context::create({true, server.cert_pem, server.key_pem, ca.cert_pem(), true, false}, err);
        client_ctx = tls::context::create({false, client.cert_pem, client.key_pem, ca.cert_pem(), true, false}, err);
        if (!server_ctx.valid() || !client_ctx.valid()) {
            std::fprintf(stderr, "tls_bench: %s\n", err.c_str());
            std::abort();
        }
    }
};

pki& shared_pki() {
    static pki p;
    return p;
}

void server_handshake(benchmark::State& state, int key_share) {
    pki& p = shared_pki();
    for (auto _ : state) {
        testing::tls_side server, client;
        client.s.start(p.client_ctx, &client.out, "edge1.test");
        server.s.start(p.server_ctx, &server.out);
        wolfSSL_UseKeyShare(client.s.raw(), static_cast<word16>(key_share));
        std::chrono::steady_clock::duration server_time{};
        if (!testing::handshake(server, client, &server_time)) {
            state.SkipWithError("handshake failed");
            return;
        }
        if (server.s.peer_cn() != p.client.cn) {
            state.SkipWithError("no client CN");
            return;
        }
        state.SetIterationTime(std::chrono::duration<double>(server_time).count());
    }
}

void BM_server_mtls13_handshake_p256_share(benchmark::State& state) {
    server_handshake(state, WOLFSSL_ECC_SECP256R1);
}
BENCHMARK(BM_server_mtls13_handshake_p256_share)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_server_mtls13_handshake_x25519_share(benchmark::State& state) {
    server_handshake(state, WOLFSSL_ECC_X25519);
}
BENCHMARK(BM_server_mtls13_handshake_x25519_share)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- the public-key operations a server does per handshake ----

// The server's own key (signs, and is the private half of an ECDH).
struct ecc_keys {
    WC_RNG rng;
    ecc_key a;
    ecc_keys() {
        wc_InitRng(&rng);
        wc_ecc_init(&a);
        wc_ecc_make_key(&rng, 32, &a);
        wc_ecc_set_rng(&a, &rng);
    }
    ~ecc_keys() {
        wc_ecc_free(&a);
        wc_FreeRng(&rng);
    }
};

void BM_p256_keygen(benchmark::State& state) {
    WC_RNG rng;
    wc_InitRng(&rng);
    for (auto _ : state) {
        ecc_key k;
        wc_ecc_init(&k);
        benchmark::DoNotOptimize(wc_ecc_make_key(&rng, 32, &k));
        wc_ecc_free(&k);
    }
    wc_FreeRng(&rng);
}
BENCHMARK(BM_p256_keygen)->Unit(benchmark::kMicrosecond);

// Points the server meets once: a client's ephemeral key share, or a client
// key seen for the first time. More of them than wolfSSL's per-thread table
// cache holds (FP_ENTRIES, 16), so every multiplication takes the uncached
// path, as a handshake's ECDH always does.
struct fresh_points {
    static constexpr int count = 64;
    WC_RNG rng;
    ecc_key keys[count];
    fresh_points() {
        wc_InitRng(&rng);
        for (ecc_key& k : keys) {
            wc_ecc_init(&k);
            wc_ecc_make_key(&rng, 32, &k);
        }
    }
    ~fresh_points() {
        for (ecc_key& k : keys) wc_ecc_free(&k);
        wc_FreeRng(&rng);
    }
};

void BM_p256_ecdh(benchmark::State& state) {
    ecc_keys k;
    fresh_points peers;
    byte secret[32];
    int next = 0;
    for (auto _ : state) {
        word32 len = sizeof secret;
        benchmark::DoNotOptimize(wc_ecc_shared_secret(&k.a, &peers.keys[next], secret, &len));
        next = (next + 1) % fresh_points::count;
    }
}
BENCHMARK(BM_p256_ecdh)->Unit(benchmark::kMicrosecond);

void BM_p256_ecdsa_sign(benchmark::State& state) {
    ecc_keys k;
    byte hash[32] = {1, 2, 3};
    byte sig[80];
    for (auto _ : state) {
        word32 len = sizeof sig;
        benchmark::DoNotOptimize(wc_ecc_sign_hash(hash, sizeof hash, sig, &len, &k.rng, &k.a));
    }
}
BENCHMARK(BM_p256_ecdsa_sign)->Unit(benchmark::kMicrosecond);

// A CertificateVerify: a fresh signature, checked with the client's key. A
// client that reconnects presents the same key, and from its second handshake
// on the shard's thread has a precomputed table for it (wolfSSL's FP_ECC
// cache, scripts/setup): /repeat_key. A key not seen before: /fresh_key.
void ecdsa_verify(benchmark::State& state, bool repeat_key) {
    fresh_points signers;
    byte hash[32] = {1, 2, 3};
    std::array<std::array<byte, 80>, fresh_points::count> sigs{};
    std::array<word32, fresh_points::count> lens{};
    for (int i = 0; i < fresh_points::count; ++i) {
        wc_ecc_set_rng(&signers.keys[i], &signers.rng);
        lens[i] = sigs[i].size();
        wc_ecc_sign_hash(hash, sizeof hash, sigs[i].data(), &lens[i], &signers.rng, &signers.keys[i]);
    }
    int next = 0;
    for (auto _ : state) {
        int ok = 0;
        benchmark::DoNotOptimize(
            wc_ecc_verify_hash(sigs[next].data(), lens[next], hash, sizeof hash, &ok, &signers.keys[next]));
        if (!ok) {
            state.SkipWithError("signature did not verify");
            return;
        }
        if (!repeat_key) next = (next + 1) % fresh_points::count;
    }
}

void BM_p256_ecdsa_verify_repeat_key(benchmark::State& state) {
    ecdsa_verify(state, true);
}
BENCHMARK(BM_p256_ecdsa_verify_repeat_key)->Unit(benchmark::kMicrosecond);

void BM_p256_ecdsa_verify_fresh_key(benchmark::State& state) {
    ecdsa_verify(state, false);
}
BENCHMARK(BM_p256_ecdsa_verify_fresh_key)->Unit(benchmark::kMicrosecond);

void BM_x25519_keygen_and_shared(benchmark::State& state) {
    WC_RNG rng;
    wc_InitRng(&rng);
    curve25519_key peer;
    wc_curve25519_init(&peer);
    wc_curve25519_make_key(&rng, 32, &peer);
    byte secret[32];
    for (auto _ : state) {
        curve25519_key k;
        wc_curve25519_init(&k);
        wc_curve25519_make_key(&rng, 32, &k);
        word32 len = sizeof secret;
        benchmark::DoNotOptimize(wc_curve25519_shared_secret(&k, &peer, secret, &len));
        wc_curve25519_free(&k);
    }
    wc_curve25519_free(&peer);
    wc_FreeRng(&rng);
}
BENCHMARK(BM_x25519_keygen_and_shared)->Unit(benchmark::kMicrosecond);

// ---- bulk: one TLS record's AES-128-GCM, what the proxy does per 16 KiB ----

void BM_aes128gcm_seal_16k(benchmark::State& state) {
    Aes aes;
    byte key[16] = {1}, iv[12] = {2}, tag[16], aad[13] = {23};
    std::vector<byte> in(16384, 7), out(16384);
    wc_AesInit(&aes, nullptr, INVALID_DEVID);
    wc_AesGcmSetKey(&aes, key, sizeof key);
    for (auto _ : state) {
        benchmark::DoNotOptimize(
            wc_AesGcmEncrypt(&aes, out.data(), in.data(), 16384, iv, sizeof iv, tag, sizeof tag, aad, sizeof aad));
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * 16384);
    wc_AesFree(&aes);
}
BENCHMARK(BM_aes128gcm_seal_16k)->Unit(benchmark::kMicrosecond);

} // namespace

BENCHMARK_MAIN();
