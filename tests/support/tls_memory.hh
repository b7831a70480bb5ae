// Two TLS sessions talking through memory, no sockets: for unit tests and
// micro-benchmarks. Each side's ciphertext goes to the other's inbox; a side
// is fed its inbox and keeps what wolfSSL did not take.
#pragma once

#include "common/tls/tls.hh"

#include <array>
#include <chrono>
#include <cstddef>
#include <span>
#include <vector>

namespace zt::testing {

struct tls_side {
    tls::session s;
    std::array<std::byte, 65536> out_storage;
    tls::out_buffer out{out_storage.data(), static_cast<uint32_t>(out_storage.size()), 0};
    std::vector<std::byte> inbox;
};

/// Moves what `from` wrote to `to`'s inbox.
inline void deliver(tls_side& from, tls_side& to) {
    to.inbox.insert(to.inbox.end(), from.out.data, from.out.data + from.out.length);
    from.out.length = 0;
}

/// Moves what each side wrote to the other's inbox.
inline void pump(tls_side& a, tls_side& b) {
    deliver(a, b);
    deliver(b, a);
}

inline void feed(tls_side& x) {
    x.s.feed(std::span<const std::byte>(x.inbox.data(), x.inbox.size()));
}

inline void consume(tls_side& x) {
    x.inbox.erase(x.inbox.begin(), x.inbox.end() - static_cast<ptrdiff_t>(x.s.input_left()));
}

/// Runs both handshakes until both finish or one fails; the time spent in the
/// server's steps is added to `server_time` when given.
inline bool handshake(tls_side& server, tls_side& client, std::chrono::steady_clock::duration* server_time = nullptr) {
    tls::status sst = tls::status::want_read, cst = tls::status::want_read;
    for (int round = 0; round < 20; ++round) {
        if (cst != tls::status::done) {
            feed(client);
            cst = client.s.handshake();
            consume(client);
        }
        deliver(client, server);
        if (sst != tls::status::done) {
            auto t0 = std::chrono::steady_clock::now();
            feed(server);
            sst = server.s.handshake();
            consume(server);
            if (server_time) {
                *server_time += std::chrono::steady_clock::now() - t0;
            }
        }
        deliver(server, client);
        if (sst == tls::status::failed || cst == tls::status::failed) {
            return false;
        }
        if (sst == tls::status::done && cst == tls::status::done) {
            return true;
        }
    }
    return false;
}

} // namespace zt::testing
