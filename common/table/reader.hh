// The validating route table reader: open() proves once, in O(n), that every
// offset, length, count, index and hash slot of a blob is sound; after that
// every lookup is noexcept, O(1), allocation-free and bounds-safe.
#pragma once

#include "common/table/format.hh"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace zt::table {

inline constexpr uint32_t none = format::none;

/// Why open() refused a blob.
enum class open_error : uint8_t {
    none,
    too_small,  ///< shorter than the header
    misaligned, ///< not 8-byte aligned in memory
    bad_magic,
    bad_version, ///< another major version, or a header size we do not know
    bad_size,    ///< total_size disagrees with the bytes given, or too large
    bad_checksum,
    bad_header, ///< flags, reserved, seeds, probe limits
    bad_layout, ///< sections not contiguous, in order, 8-aligned, zero-padded
    bad_string, ///< a string reference out of place or out of bounds
    bad_name,   ///< a DNS name or CN that is not well formed
    bad_zone,
    bad_rrset,
    bad_record,
    bad_service,
    bad_backend,
    bad_acl,
    bad_endpoint,
    bad_index, ///< a hash index slot inconsistent with what it indexes
};

/// The enumerator's name, e.g. "bad_checksum". Any thread.
const char* to_string(open_error e) noexcept;

/// What find() answers for a name.
struct name_match {
    uint32_t zone = none;  ///< none: not a private name (forward it upstream)
    uint32_t rrset = none; ///< none: the name is in the zone but has no records
    bool found() const noexcept { return zone != none; }
};

/// A service (routes.json entry) as stored in the table.
struct service_view {
    std::string_view cn;
    std::string_view name;
    std::span<const format::backend> backends;
    uint32_t total_weight = 0;
    uint32_t connect_timeout_ms = 0;
    uint32_t flags = 0; ///< format::service_* bits
};

/// An endpoint of the registry.
struct endpoint_view {
    uint32_t id = none; ///< none: no such endpoint
    std::string_view cn;
    std::string_view name;
    std::string_view serial;
    int64_t not_after = 0;
    uint8_t kind = format::kind_client;
    bool revoked = false;
    bool found() const noexcept { return id != none; }
};

class table;
struct open_result;
namespace detail {
class validator;
}

/// Validates `blob` completely (see docs/route-table.md, "Validation") and
/// returns a view of it, or the first problem found with its byte offset.
/// O(n) in the blob size, no allocation, no exceptions. The view points into
/// `blob`, which must stay mapped, unchanged, while the view is used.
/// Any thread (the data plane's control thread, in practice).
open_result open(std::span<const std::byte> blob) noexcept;

/// A validated, read-only view of one route table. Trivially copyable; a
/// default-constructed table is empty (every lookup misses). All members are
/// noexcept, allocate nothing and may be called from any thread at once; ids
/// out of range are answered as "none"/empty, never read out of bounds.
class table {
public:
    table() noexcept = default;

    uint64_t generation() const noexcept { return _generation; }
    uint64_t checksum() const noexcept { return _checksum; }
    std::span<const std::byte> bytes() const noexcept { return {_base, _size}; }

    /// Longest-suffix lookup of a DNS name in text form: any case, optional
    /// trailing dot. The name itself is an owner: {zone, rrset} (rrset none for
    /// a zone apex without records); else the longest suffix that is an owner
    /// or apex names the zone: {zone, none}; else a miss. Malformed names
    /// (empty labels, labels over 63, names over 253 bytes) miss.
    name_match find(std::string_view name) const noexcept;

    /// The endpoint with exactly this CN (case-sensitive), or none.
    uint32_t find_endpoint(std::string_view cn) const noexcept;

    uint32_t zone_count() const noexcept { return _zone_count; }
    std::string_view zone_name(uint32_t zone) const noexcept;
    /// The zone's service (index), or none when it has no route.
    uint32_t zone_service(uint32_t zone) const noexcept;
    /// The record set of the apex ("@"), or none.
    uint32_t zone_apex(uint32_t zone) const noexcept;
    /// The zone's record sets are [first, first + count).
    uint32_t zone_rrset_first(uint32_t zone) const noexcept;
    uint32_t zone_rrset_count(uint32_t zone) const noexcept;
    /// The zone's ACL: ascending endpoint ids (never a revoked endpoint).
    std::span<const format::acl_entry> zone_acl(uint32_t zone) const noexcept;
    /// May `endpoint` see `zone`? Binary search of the ACL.
    bool allows(uint32_t zone, uint32_t endpoint) const noexcept;

    uint32_t rrset_count() const noexcept { return _rrset_count; }
    std::string_view rrset_owner(uint32_t rrset) const noexcept;
    uint32_t rrset_zone(uint32_t rrset) const noexcept;
    /// The records of a record set (at least one); empty for none.
    std::span<const format::record> records(uint32_t rrset) const noexcept;

    uint32_t service_count() const noexcept { return _service_count; }
    service_view service(uint32_t service) const noexcept;
    /// Weighted choice among the service's backends with weight > 0; `r` is
    /// any random number. nullptr when none has weight.
    const format::backend* pick_backend(uint32_t service, uint32_t r) const noexcept;

    uint32_t endpoint_count() const noexcept { return _endpoint_count; }
    endpoint_view endpoint(uint32_t id) const noexcept;

    /// A string of the table (e.g. format::backend::host).
    std::string_view string(format::str s) const noexcept;

private:
    friend class detail::validator;

    const format::name_slot* probe_name(uint64_t hash, const char* name, size_t len) const noexcept;
    std::string_view slot_name(const format::name_slot& s) const noexcept;

    const std::byte* _base = nullptr;
    size_t _size = 0;
    uint64_t _generation = 0;
    uint64_t _checksum = 0;
    const char* _strings = nullptr;
    uint32_t _strings_size = 0;
    const format::name_slot* _names = nullptr;
    uint32_t _names_mask = 0; ///< capacity - 1; capacity 0 when _names is null
    uint32_t _name_max_probe = 0;
    uint32_t _name_max_length = 0;
    uint64_t _name_seed = 0;
    const format::zone* _zones = nullptr;
    uint32_t _zone_count = 0;
    const format::rrset* _rrsets = nullptr;
    uint32_t _rrset_count = 0;
    const format::record* _records = nullptr;
    uint32_t _record_count = 0;
    const format::service* _services = nullptr;
    uint32_t _service_count = 0;
    const format::backend* _backends = nullptr;
    uint32_t _backend_count = 0;
    const format::acl_entry* _acl = nullptr;
    uint32_t _acl_count = 0;
    const format::endpoint* _endpoints = nullptr;
    uint32_t _endpoint_count = 0;
    const format::endpoint_slot* _endpoint_index = nullptr;
    uint32_t _endpoint_mask = 0;
    uint32_t _endpoint_max_probe = 0;
    uint64_t _endpoint_seed = 0;
};

struct open_result {
    table view; ///< valid when ok()
    open_error error = open_error::none;
    const char* reason = ""; ///< static text: what is wrong
    uint64_t offset = 0;     ///< byte offset in the blob of the field at fault
    bool ok() const noexcept { return error == open_error::none; }
};

/// The address bytes of a record (4 for A, 16 for AAAA) or of a backend.
inline std::span<const uint8_t> address(const format::record& r) noexcept {
    return {r.addr, r.type == format::type_a ? size_t(4) : size_t(16)};
}
inline std::span<const uint8_t> address(const format::backend& b) noexcept {
    return {b.addr, b.family == format::family_ipv4 ? size_t(4) : size_t(16)};
}

} // namespace zt::table
