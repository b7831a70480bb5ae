// The stub's answer cache: whole responses keyed by question and the flags that change the answer, kept for the
// TTL the codec computes (minimum record TTL; RFC 2308 for negative answers), served with TTLs decremented by the
// time spent in the cache. Bounded; the endpoint's single thread owns it.
#pragma once

#include "common/dns/wire.hh"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace zt::endpoint {

class dns_cache {
public:
    explicit dns_cache(size_t max_entries = 4096, uint32_t max_ttl = 3600) : _max(max_entries), _max_ttl(max_ttl) {}

    /// The key of a parsed query: name, type, class, and whether it had EDNS, DO and CD.
    static std::string key_of(const dns::query& q);

    /// Copies a fresh answer into `out` with the message id `id` and TTLs aged; nullopt on a miss (or when `out`
    /// is too small).
    std::optional<size_t> lookup(const std::string& key, int64_t now_ms, uint16_t id, std::span<std::byte> out);
    /// Stores `resp` (a validated response) when the codec says it is cacheable.
    void insert(const std::string& key, std::span<const std::byte> resp, int64_t now_ms);
    void clear() noexcept { _entries.clear(); }
    size_t size() const noexcept { return _entries.size(); }

private:
    struct entry {
        std::vector<std::byte> bytes;
        int64_t stored_ms = 0;
        int64_t expires_ms = 0;
    };
    void make_room(int64_t now_ms);

    size_t _max;
    uint32_t _max_ttl;
    std::unordered_map<std::string, entry> _entries;
};

} // namespace zt::endpoint
