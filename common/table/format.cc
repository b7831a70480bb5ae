// XXH64, the route table's checksum: a plain transcription of the xxHash
// specification (64-bit variant), byte-order independent of the host.
#include "common/table/format.hh"

#include <cstring>

namespace zt::table::format {

namespace {

constexpr uint64_t p1 = 0x9E3779B185EBCA87ull;
constexpr uint64_t p2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t p3 = 0x165667B19E3779F9ull;
constexpr uint64_t p4 = 0x85EBCA77C2B2AE63ull;
constexpr uint64_t p5 = 0x27D4EB2F165667C5ull;

inline uint64_t load64(const std::byte* p) noexcept {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

inline uint32_t load32(const std::byte* p) noexcept {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

inline uint64_t round(uint64_t acc, uint64_t input) noexcept {
    acc += input * p2;
    acc = std::rotl(acc, 31);
    return acc * p1;
}

inline uint64_t merge(uint64_t acc, uint64_t val) noexcept {
    acc ^= round(0, val);
    return acc * p1 + p4;
}

} // namespace

uint64_t xxh64(std::span<const std::byte> bytes, uint64_t seed) noexcept {
    const std::byte* p = bytes.data();
    const std::byte* const end = p + bytes.size();
    uint64_t h;
    if (bytes.size() >= 32) {
        uint64_t v1 = seed + p1 + p2;
        uint64_t v2 = seed + p2;
        uint64_t v3 = seed;
        uint64_t v4 = seed - p1;
        const std::byte* const limit = end - 32;
        do {
            v1 = round(v1, load64(p));
            v2 = round(v2, load64(p + 8));
            v3 = round(v3, load64(p + 16));
            v4 = round(v4, load64(p + 24));
            p += 32;
        } while (p <= limit);
        h = std::rotl(v1, 1) + std::rotl(v2, 7) + std::rotl(v3, 12) + std::rotl(v4, 18);
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        h = merge(h, v4);
    } else {
        h = seed + p5;
    }
    h += uint64_t(bytes.size());
    while (end - p >= 8) {
        h ^= round(0, load64(p));
        h = std::rotl(h, 27) * p1 + p4;
        p += 8;
    }
    if (end - p >= 4) {
        h ^= uint64_t(load32(p)) * p1;
        h = std::rotl(h, 23) * p2 + p3;
        p += 4;
    }
    while (p < end) {
        h ^= uint64_t(std::to_integer<uint8_t>(*p)) * p5;
        h = std::rotl(h, 11) * p1;
        ++p;
    }
    h ^= h >> 33;
    h *= p2;
    h ^= h >> 29;
    h *= p3;
    h ^= h >> 32;
    return h;
}

} // namespace zt::table::format
