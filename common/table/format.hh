// The route table's binary layout, byte by byte (docs/route-table.md): one flat,
// position-independent, read-only blob that control writes (control/table/compiler)
// and every data-plane shard reads (common/table/reader). Little-endian, fixed-width.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>

namespace zt::table::format {

// Rule zero: we read the blob in place through these structs, which is only
// right on a little-endian host. Every host we build for (x86_64, aarch64) is.
static_assert(std::endian::native == std::endian::little, "the route table format is little-endian");

inline constexpr uint8_t magic[8] = {'Z', 'T', 'R', 'O', 'U', 'T', 'E', 0x1a};
inline constexpr uint16_t major_version = 1; ///< a reader refuses any other major
inline constexpr uint16_t minor_version = 0; ///< newer minors only append bytes after the last section

/// "No such item" in any u32 index field; also marks empty hash slots.
inline constexpr uint32_t none = 0xffffffffu;

inline constexpr uint64_t max_table_size = uint64_t(1) << 31; ///< 2 GiB: every offset fits a u32
inline constexpr uint32_t max_probe_limit = 64;               ///< longest probe sequence a hash index may have
inline constexpr uint32_t max_name_length = 253;              ///< DNS name, text form, no trailing dot
inline constexpr uint32_t max_label_length = 63;
inline constexpr uint32_t max_cn_length = 64;                 ///< X.509 ub-common-name
inline constexpr uint32_t max_connect_timeout_ms = 3'600'000; ///< one hour

/// The sections, in the order they follow the header.
enum section_id : uint32_t {
    sec_strings,        ///< bytes: the string pool
    sec_names,          ///< name_slot[capacity]: owner name -> (zone, record set)
    sec_zones,          ///< zone[]
    sec_rrsets,         ///< rrset[]
    sec_records,        ///< record[]
    sec_services,       ///< service[]
    sec_backends,       ///< backend[]
    sec_acl,            ///< acl_entry[]
    sec_endpoints,      ///< endpoint[]
    sec_endpoint_index, ///< endpoint_slot[capacity]: CN -> endpoint
    section_count,
};

/// Where a section starts (from the first byte of the blob) and how many
/// elements it has (bytes, for the string pool).
struct section {
    uint32_t offset;
    uint32_t count;
};
static_assert(sizeof(section) == 8);

/// A string: `length` bytes at `offset` from the start of the string pool.
/// Not NUL-terminated.
struct str {
    uint32_t offset;
    uint32_t length;
};
static_assert(sizeof(str) == 8);

struct header {
    uint8_t magic[8];            // format::magic
    uint64_t checksum;           // XXH64, seed 0, over bytes [16, total_size): everything after this field
    uint16_t major;              // format::major_version
    uint16_t minor;              // format::minor_version
    uint32_t header_size;        // sizeof(header)
    uint64_t generation;         // set by control; increases with every table it publishes
    uint64_t total_size;         // bytes in the blob, header included
    uint64_t name_seed;          // seed of name_hash() for sec_names
    uint64_t endpoint_seed;      // seed of cn_hash() for sec_endpoint_index
    uint32_t name_max_probe;     // longest displacement in sec_names (exact)
    uint32_t name_max_length;    // longest name in sec_names (exact)
    uint32_t endpoint_max_probe; // longest displacement in sec_endpoint_index (exact)
    uint32_t flags;              // 0
    section sections[section_count];
    uint64_t reserved; // 0
};
static_assert(sizeof(header) == 160);
static_assert(offsetof(header, checksum) == 8);
static_assert(offsetof(header, major) == 16);
static_assert(offsetof(header, minor) == 18);
static_assert(offsetof(header, header_size) == 20);
static_assert(offsetof(header, generation) == 24);
static_assert(offsetof(header, total_size) == 32);
static_assert(offsetof(header, name_seed) == 40);
static_assert(offsetof(header, endpoint_seed) == 48);
static_assert(offsetof(header, name_max_probe) == 56);
static_assert(offsetof(header, name_max_length) == 60);
static_assert(offsetof(header, endpoint_max_probe) == 64);
static_assert(offsetof(header, flags) == 68);
static_assert(offsetof(header, sections) == 72);
static_assert(offsetof(header, reserved) == 152);

/// The first byte the checksum covers: all but the magic and the checksum itself.
inline constexpr size_t checksum_from = offsetof(header, major);

/// One slot of the owner-name hash index (open addressing, linear probing).
/// Empty: all three fields `none`. The slot's name is rrsets[rrset].owner, or
/// zones[zone].name when rrset is `none` (a zone apex without records).
struct name_slot {
    uint32_t tag;   // name_hash() >> 32
    uint32_t zone;  // index into sec_zones
    uint32_t rrset; // index into sec_rrsets, or none
};
static_assert(sizeof(name_slot) == 12);

struct zone {
    str name;             // lower case, no trailing dot
    str service_cn;       // == services[service].cn (same offset and length); empty when service is none
    uint32_t rrset_first; // this zone's record sets: [rrset_first, rrset_first + rrset_count)
    uint32_t rrset_count;
    uint32_t apex_rrset; // rrset_first when the apex ("@") has records, else none
    uint32_t service;    // index into sec_services, or none
    uint32_t acl_first;  // this zone's ACL: acl[acl_first, acl_first + acl_count), ascending endpoint ids
    uint32_t acl_count;
    uint32_t index_slot; // the sec_names slot of the zone apex
    uint32_t reserved;   // 0
};
static_assert(sizeof(zone) == 48);
static_assert(offsetof(zone, rrset_first) == 16);
static_assert(offsetof(zone, index_slot) == 40);

struct rrset {
    str owner;             // full owner name: the zone name for "@", else "label.zone"
    uint32_t zone;         // the zone it belongs to
    uint32_t record_first; // records[record_first, record_first + record_count), count >= 1
    uint32_t record_count;
    uint32_t index_slot; // its sec_names slot (the zone's slot for the apex)
};
static_assert(sizeof(rrset) == 24);

inline constexpr uint16_t type_a = 1;
inline constexpr uint16_t type_aaaa = 28;

struct record {
    uint16_t type;     // type_a or type_aaaa
    uint16_t reserved; // 0
    uint8_t addr[16];  // A: 4 bytes, then 12 zero bytes; AAAA: 16 bytes
};
static_assert(sizeof(record) == 20);
static_assert(offsetof(record, addr) == 4);

inline constexpr uint32_t service_health_check = 1u << 0;         ///< active TCP health checks
inline constexpr uint32_t service_via_service_endpoint = 1u << 1; ///< reached through a dialled-out service endpoint
inline constexpr uint32_t service_known_flags = service_health_check | service_via_service_endpoint;

struct service {
    str cn;                 // the service's CN (routes.json key)
    str name;               // display name
    uint32_t backend_first; // backends[backend_first, backend_first + backend_count), count >= 1
    uint32_t backend_count;
    uint32_t total_weight;       // sum of the backends' weights
    uint32_t connect_timeout_ms; // 1 .. max_connect_timeout_ms
    uint32_t flags;              // service_* bits
    uint32_t reserved;           // 0
};
static_assert(sizeof(service) == 40);
static_assert(offsetof(service, backend_first) == 16);

inline constexpr uint8_t family_ipv4 = 4;
inline constexpr uint8_t family_ipv6 = 6;

struct backend {
    str host;         // as written in routes.json, for logs
    uint8_t family;   // family_ipv4 or family_ipv6
    uint8_t reserved; // 0
    uint16_t port;    // host byte order, 1..65535
    uint32_t weight;  // 0 means drained (never picked)
    uint8_t addr[16]; // resolved address; IPv4: 4 bytes, then 12 zero bytes
};
static_assert(sizeof(backend) == 32);
static_assert(offsetof(backend, port) == 10);
static_assert(offsetof(backend, addr) == 16);

/// One endpoint allowed to see a zone. `tag` repeats the endpoint's CN hash tag
/// (endpoint_index[endpoints[endpoint].index_slot].tag) so that the reader can
/// prove each id is the one the compiler meant.
struct acl_entry {
    uint32_t endpoint;
    uint32_t tag;
};
static_assert(sizeof(acl_entry) == 8);

inline constexpr uint8_t kind_client = 0;
inline constexpr uint8_t kind_service = 1;

struct endpoint {
    str cn;
    str name;
    str serial;          // certificate serial, hex
    int64_t not_after;   // certificate expiry, Unix seconds
    uint8_t kind;        // kind_client or kind_service
    uint8_t revoked;     // 0 or 1; a revoked endpoint is in no ACL
    uint16_t reserved;   // 0
    uint32_t index_slot; // its sec_endpoint_index slot
};
static_assert(sizeof(endpoint) == 40);
static_assert(offsetof(endpoint, not_after) == 24);
static_assert(offsetof(endpoint, kind) == 32);
static_assert(offsetof(endpoint, index_slot) == 36);

/// One slot of the CN hash index (cn_hash()). Empty: both fields `none`.
struct endpoint_slot {
    uint32_t tag;      // cn_hash() >> 32
    uint32_t endpoint; // index into sec_endpoints
};
static_assert(sizeof(endpoint_slot) == 8);

/// Element size of each section, by section_id.
inline constexpr uint32_t element_size[section_count] = {
    1,
    sizeof(name_slot),
    sizeof(zone),
    sizeof(rrset),
    sizeof(record),
    sizeof(service),
    sizeof(backend),
    sizeof(acl_entry),
    sizeof(endpoint),
    sizeof(endpoint_slot),
};

inline constexpr uint64_t align8(uint64_t v) noexcept {
    return (v + 7) & ~uint64_t(7);
}

/// ASCII lower case; other bytes unchanged.
inline constexpr uint8_t fold(uint8_t c) noexcept {
    return uint8_t(c - 'A') < 26 ? uint8_t(c | 0x20) : c;
}

inline constexpr uint64_t fnv_offset = 0xcbf29ce484222325ull;
inline constexpr uint64_t fnv_prime = 0x100000001b3ull;

/// The MurmurHash3 64-bit finaliser.
inline constexpr uint64_t fmix64(uint64_t h) noexcept {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/// The state name_hash() starts from.
inline constexpr uint64_t hash_start(uint64_t seed) noexcept {
    return fnv_offset ^ seed;
}
/// One byte of name_hash(): FNV-1a step on the ASCII-folded byte.
inline constexpr uint64_t hash_step(uint64_t h, uint8_t c) noexcept {
    return (h ^ fold(c)) * fnv_prime;
}

/// The hash of the name index: FNV-1a 64 over the bytes from the LAST to the
/// FIRST, ASCII-folded, starting from fnv_offset ^ seed, then fmix64. Going
/// backwards lets a lookup hash every suffix of a name in one pass. The home
/// slot is `hash & (capacity - 1)`, the tag `hash >> 32`.
inline constexpr uint64_t name_hash(uint64_t seed, const char* p, size_t n) noexcept {
    uint64_t h = hash_start(seed);
    for (size_t i = n; i-- > 0;) {
        h = hash_step(h, uint8_t(p[i]));
    }
    return fmix64(h);
}

/// The hash of the endpoint index: as name_hash() but without folding, since
/// CNs compare case-sensitively (so a CN's case is covered by its tag too).
inline constexpr uint64_t cn_hash(uint64_t seed, const char* p, size_t n) noexcept {
    uint64_t h = hash_start(seed);
    for (size_t i = n; i-- > 0;) {
        h = (h ^ uint8_t(p[i])) * fnv_prime;
    }
    return fmix64(h);
}

/// XXH64 (xxHash, 64-bit, as specified at github.com/Cyan4973/xxHash) of `bytes`.
/// Any thread; no allocation.
uint64_t xxh64(std::span<const std::byte> bytes, uint64_t seed = 0) noexcept;

/// The checksum of a whole blob (header included): xxh64 of bytes [checksum_from, size).
/// Precondition: blob.size() >= sizeof(header).
inline uint64_t checksum(std::span<const std::byte> blob) noexcept {
    return xxh64(blob.subspan(checksum_from));
}

} // namespace zt::table::format
