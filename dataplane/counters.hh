// Per-shard counters: integers written only by their shard, declared once as
// an X-macro list, in a cache-line-aligned block of the metrics page
// (common/metrics) that ztdns-control maps read-only for `ztdns metrics`.
#pragma once

#include "common/metrics/page.hh"

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace zt::dataplane {

#define ZT_SHARD_COUNTERS(X)                                                                                          \
    X(connections_accepted)                                                                                           \
    X(connections_refused_full)    /* slab or buffer pool exhausted */                                                \
    X(connections_refused_per_cn)  /* over max_connections_per_cn */                                                  \
    X(connections_closed)                                                                                             \
    X(handshakes)                                                                                                     \
    X(handshake_failures)          /* bad, missing, expired or foreign certificate, protocol error */                 \
    X(handshake_timeouts)                                                                                             \
    X(auth_unknown_cn)                                                                                                \
    X(auth_revoked_cn)                                                                                                \
    X(revoked_while_open)          /* closed after a new table revoked the CN */                                     \
    X(idle_timeouts)                                                                                                  \
    X(queries)                                                                                                        \
    X(queries_private)                                                                                                \
    X(queries_denied)              /* private name, CN not allowed: answered as if it did not exist */               \
    X(queries_forwarded)                                                                                              \
    X(queries_malformed)                                                                                              \
    X(cache_hits)                                                                                                     \
    X(cache_misses)                                                                                                   \
    X(upstream_timeouts)                                                                                              \
    X(upstream_errors)                                                                                                \
    X(upstream_truncated)                                                                                             \
    X(rcode_noerror)                                                                                                  \
    X(rcode_nxdomain)                                                                                                 \
    X(rcode_servfail)                                                                                                 \
    X(rcode_formerr)                                                                                                  \
    X(rcode_other)                                                                                                    \
    X(table_switches)                                                                                                 \
    X(tunnels_opened)                                                                                                 \
    X(tunnels_closed)                                                                                                 \
    X(tunnels_ktls)                /* handed to kernel TLS; the others stay in user space */                         \
    X(tunnel_bytes_up)                                                                                                \
    X(tunnel_bytes_down)                                                                                              \
    X(proxy_refused_no_name)       /* no SNI, Host or inner SNI */                                                    \
    X(proxy_refused_unknown_name)  /* not a private name */                                                           \
    X(proxy_refused_not_allowed)   /* CN not in the zone's allowed_endpoints */                                       \
    X(proxy_refused_no_route)      /* the zone has no service, or no backend */                                       \
    X(backend_connect_failures)                                                                                       \
    X(backend_unreachable)         /* every backend failed */                                                         \
    X(ktls_key_updates)            /* kTLS tunnels closed on a client KeyUpdate */                                    \
    X(busy_poll_hits)              /* waits that polled and found work (--busy-poll-us) */                           \
    X(busy_poll_misses)            /* waits that polled for nothing, then slept */                                    \
    X(accept_fd_table_full)        /* accept failed with EMFILE/ENFILE: the listener rests until the next tick */    \
    X(recv_no_buffer)              /* a receive found every buffer of its pool busy: re-armed after the turn */       \
    X(bugs)                        /* an invariant broke; logged once each */

/// One slot of the page. Only its shard writes it, so an increment is a
/// relaxed load and a relaxed store (plain moves on x86-64, no lock prefix);
/// readers in other threads and in control see whole values.
class counter {
public:
    counter& operator++() noexcept {
        set(get() + 1);
        return *this;
    }
    counter& operator--() noexcept { ///< for gauges
        set(get() - 1);
        return *this;
    }
    counter& operator+=(uint64_t n) noexcept {
        set(get() + n);
        return *this;
    }
    counter& operator=(uint64_t v) noexcept { ///< for gauges
        set(v);
        return *this;
    }
    operator uint64_t() const noexcept { return get(); }

private:
    uint64_t get() const noexcept { return __atomic_load_n(&_v, __ATOMIC_RELAXED); }
    void set(uint64_t v) noexcept { __atomic_store_n(&_v, v, __ATOMIC_RELAXED); }
    uint64_t _v = 0;
};
static_assert(sizeof(counter) == 8);

/// Latency of forwarded queries, from the query to its answer from upstream
/// (or the cache entry it waited for): bucket i counts answers below
/// 2^(i+1) microseconds and at or above 2^i (bucket 0 from 0). Private
/// answers go out in the loop turn their query arrived in, so they are not
/// timed.
inline constexpr size_t latency_buckets = 24;

/// One shard's block of the metrics page; its slots, in order, are
/// page_slots().
struct alignas(64) shard_counters {
#define ZT_DECLARE_COUNTER(name) counter name;
    ZT_SHARD_COUNTERS(ZT_DECLARE_COUNTER)
#undef ZT_DECLARE_COUNTER
    counter connections_active; ///< a gauge
    counter tunnels_active;     ///< a gauge: opened and not yet closed (a service endpoint's pair counts once)
    std::array<counter, latency_buckets> forwarded_latency_us{};
};

/// The page's description of shard_counters, slot by slot.
inline std::vector<metrics::slot_desc> page_slots() {
    std::vector<metrics::slot_desc> v;
#define ZT_DESCRIBE_COUNTER(name) v.push_back({metrics::kind::counter, #name});
    ZT_SHARD_COUNTERS(ZT_DESCRIBE_COUNTER)
#undef ZT_DESCRIBE_COUNTER
    v.push_back({metrics::kind::gauge, "connections_active"});
    v.push_back({metrics::kind::gauge, "tunnels_active"});
    for (size_t i = 0; i < latency_buckets; ++i) {
        v.push_back({metrics::kind::histogram, "forwarded_answer_latency"});
    }
    return v;
}

#define ZT_ONE(name) +1
static_assert(offsetof(shard_counters, forwarded_latency_us) == 8 * (0 ZT_SHARD_COUNTERS(ZT_ONE) + 2),
              "shard_counters must be the slots of page_slots(), in order, without padding");
#undef ZT_ONE

} // namespace zt::dataplane
