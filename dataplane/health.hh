// Active TCP health checks of the backends whose route says `health_check`:
// one prober thread connects to each every interval (non-blocking connects,
// polled together, each with the route's connect timeout) and marks a backend
// down after `fall` failures in a row, up again after `rise` successes in a
// row, with one log line per change. The verdicts go on a board that the
// prober alone writes and every shard reads with relaxed loads when it picks
// a backend (next to its own passive health): shards still share nothing
// they write.
#pragma once

#include "common/table/holder.hh"
#include "common/table/reader.hh"

#include <netinet/in.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace zt::dataplane {

/// A backend's socket address as the proxy connects to it (IPv4 in the
/// first bytes, the rest zero), and the key both health records use.
sockaddr_in6 backend_address(const table::format::backend& b) noexcept;
uint64_t address_key(const sockaddr_in6& a) noexcept;

class health_board {
public:
    static constexpr size_t capacity = 1024; ///< backends under active checks
    /// Shards: did the checks mark this backend down? Unknown backends are up.
    bool down(uint64_t key) const noexcept;
    /// The prober: records a verdict; false when the board is full.
    bool set(uint64_t key, bool down) noexcept;

private:
    struct alignas(16) entry {
        std::atomic<uint64_t> key{0}; ///< 0: empty; written once, after `down`
        std::atomic<uint32_t> down{0};
    };
    std::array<entry, capacity> _entries;
};

struct health_options {
    uint32_t interval_ms = 2000;
    uint32_t timeout_ms = 1000; ///< per check, unless the route sets connect_timeout_ms (capped by the interval)
    uint32_t fall = 2;          ///< failures in a row before a backend is marked down
    uint32_t rise = 2;          ///< successes in a row before it is up again
};

/// The prober thread's state. run() returns when `stop` is set (within one
/// interval at most 100 ms later).
class health_prober {
public:
    health_prober(health_board& board, table::holder::reader&& reader, health_options o);
    void run(const std::atomic<bool>& stop);
    /// One round: checks every backend of the current table once. For run() and tests.
    void round();

private:
    struct state {
        bool down = false;
        uint32_t fails = 0; ///< in a row
        uint32_t oks = 0;   ///< in a row
        uint64_t seen = 0;  ///< the round that last listed it
    };
    health_board& _board;
    table::holder::reader _reader;
    health_options _o;
    uint64_t _round = 0;
    std::unordered_map<uint64_t, state> _states;
};

} // namespace zt::dataplane
