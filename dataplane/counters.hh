// Per-shard counters: plain integers written only by their shard, declared
// once as an X-macro list, in a cache-line-aligned block that the main thread
// reads (racy but word-sized reads of monotonic values) off the hot path.
#pragma once

#include <array>
#include <cstdint>

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
    X(tunnels_ktls)                                                                                                   \
    X(tunnels_user_tls)                                                                                               \
    X(tunnel_bytes_up)                                                                                                \
    X(tunnel_bytes_down)                                                                                              \
    X(proxy_refused_no_name)       /* no SNI, Host or inner SNI */                                                    \
    X(proxy_refused_unknown_name)  /* not a private name */                                                           \
    X(proxy_refused_not_allowed)   /* CN not in the zone's allowed_endpoints */                                       \
    X(proxy_refused_no_route)      /* the zone has no service, or no backend */                                       \
    X(backend_connect_failures)                                                                                       \
    X(backend_unreachable)         /* every backend failed */                                                         \
    X(ktls_key_updates)            /* kTLS tunnels closed on a client KeyUpdate */                                    \
    X(bugs)                        /* an invariant broke; logged once each */

/// Latency of answered queries: bucket i counts answers in [2^i, 2^(i+1)) microseconds.
inline constexpr size_t latency_buckets = 24;

struct alignas(64) shard_counters {
#define ZT_DECLARE_COUNTER(name) uint64_t name = 0;
    ZT_SHARD_COUNTERS(ZT_DECLARE_COUNTER)
#undef ZT_DECLARE_COUNTER
    uint64_t connections_active = 0; ///< a gauge
    std::array<uint64_t, latency_buckets> latency_us{};
};

/// Visits every counter as (name, value).
template <typename F>
void for_each_counter(const shard_counters& c, F&& f) {
#define ZT_VISIT_COUNTER(name) f(#name, c.name);
    ZT_SHARD_COUNTERS(ZT_VISIT_COUNTER)
#undef ZT_VISIT_COUNTER
    f("connections_active", c.connections_active);
}

} // namespace zt::dataplane
