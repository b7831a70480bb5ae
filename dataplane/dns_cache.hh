// The per-shard DNS cache of upstream answers: 4-way set-associative, fixed
// size, mapped once; entries expire by the TTL of the answer (RFC 2308 for
// negative answers). Lookup and insert allocate nothing. Shard thread only.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace zt::dataplane {

class dns_cache {
public:
    static constexpr size_t max_key = 260;
    static constexpr size_t max_value = 1232; ///< larger answers are not cached

    dns_cache() = default;
    dns_cache(const dns_cache&) = delete;
    dns_cache& operator=(const dns_cache&) = delete;
    ~dns_cache() {
        if (_entries) {
            munmap(_entries, _bytes);
        }
    }

    /// `entries` rounded up to a multiple of 4 sets; 0 disables the cache.
    bool init(uint32_t entries) noexcept {
        if (entries == 0) {
            return true;
        }
        uint32_t sets = 1;
        while (sets * ways < entries) {
            sets <<= 1;
        }
        _bytes = size_t(sets) * ways * sizeof(entry);
        void* p = mmap(nullptr, _bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            return false;
        }
        _entries = static_cast<entry*>(p);
        _set_mask = sets - 1;
        return true;
    }

    /// Builds the key of a question: lower-case name, type, class, DO and CD bits.
    static size_t make_key(std::string_view qname, uint16_t qtype, uint16_t qclass, bool dnssec_ok, bool cd,
                           std::byte (&key)[max_key]) noexcept {
        size_t n = std::min(qname.size(), max_key - 5);
        std::memcpy(key, qname.data(), n);
        key[n++] = std::byte(qtype >> 8);
        key[n++] = std::byte(qtype);
        key[n++] = std::byte(qclass >> 8);
        key[n++] = std::byte(qclass);
        key[n++] = std::byte((dnssec_ok ? 1 : 0) | (cd ? 2 : 0));
        return n;
    }

    /// The cached answer and its age in seconds, or an empty span.
    std::span<const std::byte> find(std::span<const std::byte> key, uint32_t now_s, uint32_t& age_s) const noexcept {
        if (!_entries) {
            return {};
        }
        uint64_t h = hash(key);
        entry* set = _entries + (h & _set_mask) * ways;
        for (uint32_t w = 0; w < ways; ++w) {
            const entry& e = set[w];
            if (e.hash == h && e.key_len == key.size() && e.expires_s > now_s &&
                std::memcmp(e.key, key.data(), key.size()) == 0) {
                age_s = now_s - e.stored_s;
                return {e.value, e.value_len};
            }
        }
        return {};
    }

    /// Stores an answer for `ttl_s` seconds (replacing the expired or the
    /// soonest-expiring way of its set).
    void insert(std::span<const std::byte> key, std::span<const std::byte> value, uint32_t now_s,
                uint32_t ttl_s) noexcept {
        if (!_entries || value.size() > max_value || key.size() > max_key || ttl_s == 0) {
            return;
        }
        uint64_t h = hash(key);
        entry* set = _entries + (h & _set_mask) * ways;
        entry* victim = &set[0];
        for (uint32_t w = 0; w < ways; ++w) {
            entry& e = set[w];
            if (e.hash == h && e.key_len == key.size() && std::memcmp(e.key, key.data(), key.size()) == 0) {
                victim = &e;
                break;
            }
            if (e.expires_s < victim->expires_s) {
                victim = &e;
            }
        }
        victim->hash = h;
        victim->stored_s = now_s;
        victim->expires_s = now_s + ttl_s;
        victim->key_len = static_cast<uint16_t>(key.size());
        victim->value_len = static_cast<uint16_t>(value.size());
        std::memcpy(victim->key, key.data(), key.size());
        std::memcpy(victim->value, value.data(), value.size());
    }

private:
    static constexpr uint32_t ways = 4;
    struct entry {
        uint64_t hash;
        uint32_t stored_s;
        uint32_t expires_s;
        uint16_t key_len;
        uint16_t value_len;
        std::byte key[max_key];
        std::byte value[max_value];
    };

    static uint64_t hash(std::span<const std::byte> key) noexcept {
        uint64_t h = 0xcbf29ce484222325ull; // FNV-1a: keys are short
        for (std::byte b : key) {
            h = (h ^ uint64_t(b)) * 0x100000001b3ull;
        }
        return h;
    }

    entry* _entries = nullptr;
    size_t _bytes = 0;
    uint64_t _set_mask = 0;
};

} // namespace zt::dataplane
