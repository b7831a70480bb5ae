// open(): the one-pass validation of a route table (docs/route-table.md,
// "Validation"), and the lookups it makes safe.
#include "common/table/reader.hh"

#include <algorithm>
#include <cstring>

namespace zt::table {

namespace {

using format::acl_entry;
using format::align8;
using format::checksum;
using format::cn_hash;
using format::element_size;
using format::endpoint_slot;
using format::family_ipv4;
using format::family_ipv6;
using format::fmix64;
using format::hash_start;
using format::hash_step;
using format::kind_service;
using format::magic;
using format::major_version;
using format::max_cn_length;
using format::max_connect_timeout_ms;
using format::max_label_length;
using format::max_name_length;
using format::max_probe_limit;
using format::max_table_size;
using format::minor_version;
using format::name_hash;
using format::name_slot;
using format::sec_acl;
using format::sec_backends;
using format::sec_endpoint_index;
using format::sec_endpoints;
using format::sec_names;
using format::sec_records;
using format::sec_rrsets;
using format::sec_services;
using format::sec_strings;
using format::sec_zones;
using format::section;
using format::section_count;
using format::section_id;
using format::service_known_flags;
using format::str;
using format::type_a;
using format::type_aaaa;

inline bool is_name_char(uint8_t c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/// A stored DNS name: lower case [a-z0-9_-] labels of 1..63 bytes, at most
/// 253 bytes, no leading, trailing or double dot.
bool valid_name(std::string_view s) noexcept {
    if (s.empty() || s.size() > max_name_length) {
        return false;
    }
    size_t label = 0;
    for (char ch : s) {
        auto c = uint8_t(ch);
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        if (!is_name_char(c) || ++label > max_label_length) {
            return false;
        }
    }
    return label != 0;
}

/// A CN: 1..64 printable ASCII bytes, no space.
bool valid_cn(std::string_view s) noexcept {
    if (s.empty() || s.size() > max_cn_length) {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [](char ch) { return uint8_t(ch) > 0x20 && uint8_t(ch) < 0x7f; });
}

bool all_zero(const uint8_t* p, size_t n) noexcept {
    for (size_t i = 0; i < n; ++i) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

} // namespace

namespace detail {

/// Walks the blob in the canonical order of docs/route-table.md. Every check
/// is on bytes already proven to be inside the blob.
class validator {
public:
    explicit validator(std::span<const std::byte> blob) noexcept : _base(blob.data()), _size(blob.size()) {}

    open_result run() noexcept {
        if (header() && layout() && endpoint_slots() && endpoints() && services() && name_slots() && zones() &&
            nesting()) {
            _res.view = _t;
        }
        return _res;
    }

private:
    bool fail(open_error e, const char* reason, const void* where) noexcept {
        _res.error = e;
        _res.reason = reason;
        _res.offset = where ? uint64_t(static_cast<const std::byte*>(where) - _base) : 0;
        return false;
    }

    template <typename T>
    const T* at(uint64_t offset) const noexcept {
        return reinterpret_cast<const T*>(_base + offset);
    }

    std::string_view text(const str& s) const noexcept { return {_t._strings + s.offset, s.length}; }

    /// The next string of the canonical order must start where the last ended.
    bool fresh(const str& s) noexcept {
        if (s.offset != _cursor || s.length > _t._strings_size - _cursor) {
            return fail(open_error::bad_string, "string reference out of order or out of bounds", &s);
        }
        _cursor += s.length;
        return true;
    }

    bool header() noexcept {
        if (_size < sizeof(format::header)) {
            return fail(open_error::too_small, "shorter than the header", nullptr);
        }
        if (reinterpret_cast<uintptr_t>(_base) % 8 != 0) {
            return fail(open_error::misaligned, "blob not 8-byte aligned in memory", nullptr);
        }
        _h = at<format::header>(0);
        if (std::memcmp(_h->magic, magic, sizeof magic) != 0) {
            return fail(open_error::bad_magic, "not a route table (magic)", _h->magic);
        }
        if (_h->major != major_version) {
            return fail(open_error::bad_version, "unsupported major version", &_h->major);
        }
        if (_h->header_size != sizeof(format::header)) {
            return fail(open_error::bad_version, "unexpected header size", &_h->header_size);
        }
        if (_h->total_size != _size || _h->total_size > max_table_size) {
            return fail(open_error::bad_size, "total_size differs from the bytes given, or exceeds 2 GiB",
                        &_h->total_size);
        }
        if (checksum(std::span(_base, _size)) != _h->checksum) {
            return fail(open_error::bad_checksum, "checksum mismatch", &_h->checksum);
        }
        if (_h->flags != 0) {
            return fail(open_error::bad_header, "unknown flags", &_h->flags);
        }
        if (_h->reserved != 0) {
            return fail(open_error::bad_header, "reserved field not zero", &_h->reserved);
        }
        _t._base = _base;
        _t._size = _size;
        _t._generation = _h->generation;
        _t._checksum = _h->checksum;
        return true;
    }

    bool layout() noexcept {
        uint64_t expected = sizeof(format::header);
        for (uint32_t i = 0; i < section_count; ++i) {
            const section& s = _h->sections[i];
            if (s.offset != expected) {
                return fail(open_error::bad_layout, "section does not start where the previous one ends", &s.offset);
            }
            uint64_t end = uint64_t(s.offset) + uint64_t(s.count) * element_size[i];
            if (end > _size) {
                return fail(open_error::bad_layout, "section runs past the end of the blob", &s.count);
            }
            uint64_t padded = align8(end);
            if (padded > _size || !all_zero(at<uint8_t>(end), padded - end)) {
                return fail(open_error::bad_layout, "section padding not zero", _base + end);
            }
            expected = padded;
        }
        // A newer minor version may append bytes after the last section.
        if (_h->minor <= minor_version ? expected != _size : expected > _size) {
            return fail(open_error::bad_layout, "bytes after the last section",
                        _base + std::min<uint64_t>(expected, _size));
        }
        auto sec = [&](section_id id) { return _h->sections[id]; };
        _t._strings = at<char>(sec(sec_strings).offset);
        _t._strings_size = sec(sec_strings).count;
        _t._zones = at<format::zone>(sec(sec_zones).offset);
        _t._zone_count = sec(sec_zones).count;
        _t._rrsets = at<format::rrset>(sec(sec_rrsets).offset);
        _t._rrset_count = sec(sec_rrsets).count;
        _t._records = at<format::record>(sec(sec_records).offset);
        _t._record_count = sec(sec_records).count;
        _t._services = at<format::service>(sec(sec_services).offset);
        _t._service_count = sec(sec_services).count;
        _t._backends = at<format::backend>(sec(sec_backends).offset);
        _t._backend_count = sec(sec_backends).count;
        _t._acl = at<acl_entry>(sec(sec_acl).offset);
        _t._acl_count = sec(sec_acl).count;
        _t._endpoints = at<format::endpoint>(sec(sec_endpoints).offset);
        _t._endpoint_count = sec(sec_endpoints).count;

        uint32_t names_cap = sec(sec_names).count;
        if (names_cap == 0 || !std::has_single_bit(names_cap)) {
            return fail(open_error::bad_layout, "name index capacity not a power of two",
                        &_h->sections[sec_names].count);
        }
        if (_h->name_max_probe > max_probe_limit || _h->name_max_probe >= names_cap) {
            return fail(open_error::bad_header, "name index probe limit too large", &_h->name_max_probe);
        }
        if (_h->name_max_length > max_name_length) {
            return fail(open_error::bad_header, "longest name over 253 bytes", &_h->name_max_length);
        }
        _t._names = at<name_slot>(sec(sec_names).offset);
        _t._names_mask = names_cap - 1;
        _t._name_max_probe = _h->name_max_probe;
        _t._name_max_length = _h->name_max_length;
        _t._name_seed = _h->name_seed;

        uint32_t ep_cap = sec(sec_endpoint_index).count;
        if (ep_cap == 0 || !std::has_single_bit(ep_cap)) {
            return fail(open_error::bad_layout, "endpoint index capacity not a power of two",
                        &_h->sections[sec_endpoint_index].count);
        }
        if (_h->endpoint_max_probe > max_probe_limit || _h->endpoint_max_probe >= ep_cap) {
            return fail(open_error::bad_header, "endpoint index probe limit too large", &_h->endpoint_max_probe);
        }
        _t._endpoint_index = at<endpoint_slot>(sec(sec_endpoint_index).offset);
        _t._endpoint_mask = ep_cap - 1;
        _t._endpoint_max_probe = _h->endpoint_max_probe;
        _t._endpoint_seed = _h->endpoint_seed;
        return true;
    }

    /// A string that may not be validated yet, if it lies inside the pool.
    bool in_pool(const str& s, std::string_view& out) const noexcept {
        if (s.offset > _t._strings_size || s.length > _t._strings_size - s.offset) {
            return false;
        }
        out = text(s);
        return true;
    }

    /// Slot pass: empty slots are all ones, occupied ones name an endpoint.
    /// With the endpoints' back-pointers (checked next) and the equal count,
    /// slots and endpoints are in one-to-one correspondence.
    bool endpoint_slots() noexcept {
        uint32_t occupied = 0;
        for (uint32_t i = 0; i <= _t._endpoint_mask; ++i) {
            const endpoint_slot& s = _t._endpoint_index[i];
            if (s.endpoint == none) {
                if (s.tag != none) {
                    return fail(open_error::bad_index, "empty endpoint slot not all ones", &s.tag);
                }
            } else if (s.endpoint >= _t._endpoint_count) {
                return fail(open_error::bad_index, "endpoint slot out of bounds", &s.endpoint);
            } else {
                ++occupied;
            }
        }
        if (occupied != _t._endpoint_count) {
            return fail(open_error::bad_index, "endpoint index does not hold every endpoint once",
                        &_h->sections[format::sec_endpoint_index]);
        }
        return true;
    }

    bool endpoints() noexcept {
        const uint32_t mask = _t._endpoint_mask;
        uint32_t longest = 0;
        for (uint32_t i = 0; i < _t._endpoint_count; ++i) {
            const format::endpoint& e = _t._endpoints[i];
            if (!fresh(e.cn) || !fresh(e.name) || !fresh(e.serial)) {
                return false;
            }
            std::string_view cn = text(e.cn);
            if (!valid_cn(cn)) {
                return fail(open_error::bad_name, "endpoint CN not printable ASCII of 1..64 bytes", &e.cn);
            }
            if (e.kind > kind_service) {
                return fail(open_error::bad_endpoint, "unknown endpoint kind", &e.kind);
            }
            if (e.revoked > 1) {
                return fail(open_error::bad_endpoint, "revoked is neither 0 nor 1", &e.revoked);
            }
            if (e.reserved != 0) {
                return fail(open_error::bad_endpoint, "reserved field not zero", &e.reserved);
            }
            if (e.index_slot > mask || _t._endpoint_index[e.index_slot].endpoint != i) {
                return fail(open_error::bad_endpoint, "index slot does not point back at the endpoint", &e.index_slot);
            }
            const endpoint_slot& s = _t._endpoint_index[e.index_slot];
            uint64_t h = cn_hash(_t._endpoint_seed, cn.data(), cn.size());
            if (s.tag != uint32_t(h >> 32)) {
                return fail(open_error::bad_index, "endpoint slot tag is not the CN's hash", &s.tag);
            }
            uint32_t home = uint32_t(h) & mask;
            uint32_t distance = (e.index_slot - home) & mask;
            if (distance > _t._endpoint_max_probe) {
                return fail(open_error::bad_index, "endpoint slot beyond the probe limit", &s);
            }
            // A lookup walks from home: no hole before the slot, no equal CN.
            for (uint32_t j = home; j != e.index_slot; j = (j + 1) & mask) {
                const endpoint_slot& o = _t._endpoint_index[j];
                if (o.endpoint == none) {
                    return fail(open_error::bad_index, "hole in an endpoint probe sequence", &o);
                }
                std::string_view other;
                if (o.tag == s.tag && in_pool(_t._endpoints[o.endpoint].cn, other) && other == cn) {
                    return fail(open_error::bad_index, "duplicate CN", &s);
                }
            }
            longest = std::max(longest, distance);
        }
        if (longest != _t._endpoint_max_probe) {
            return fail(open_error::bad_header, "endpoint probe limit is not the longest displacement",
                        &_h->endpoint_max_probe);
        }
        return true;
    }

    bool services() noexcept {
        uint32_t next_backend = 0;
        for (uint32_t i = 0; i < _t._service_count; ++i) {
            const format::service& s = _t._services[i];
            if (!fresh(s.cn) || !fresh(s.name)) {
                return false;
            }
            if (!valid_cn(text(s.cn))) {
                return fail(open_error::bad_name, "service CN not printable ASCII of 1..64 bytes", &s.cn);
            }
            if (s.backend_first != next_backend) {
                return fail(open_error::bad_service, "backends not contiguous", &s.backend_first);
            }
            if (s.backend_count == 0 || s.backend_count > _t._backend_count - next_backend) {
                return fail(open_error::bad_service, "backend count zero or out of bounds", &s.backend_count);
            }
            uint64_t weight = 0;
            for (uint32_t b = s.backend_first; b < s.backend_first + s.backend_count; ++b) {
                const format::backend& be = _t._backends[b];
                if (!fresh(be.host)) {
                    return false;
                }
                if (be.family != family_ipv4 && be.family != family_ipv6) {
                    return fail(open_error::bad_backend, "unknown address family", &be.family);
                }
                if (be.reserved != 0) {
                    return fail(open_error::bad_backend, "reserved field not zero", &be.reserved);
                }
                if (be.port == 0) {
                    return fail(open_error::bad_backend, "port 0", &be.port);
                }
                if (be.family == family_ipv4 && !all_zero(be.addr + 4, 12)) {
                    return fail(open_error::bad_backend, "IPv4 address not zero-padded", be.addr + 4);
                }
                weight += be.weight;
            }
            next_backend += s.backend_count;
            if (weight != s.total_weight) {
                return fail(open_error::bad_service, "total weight is not the sum of the weights", &s.total_weight);
            }
            if (s.connect_timeout_ms == 0 || s.connect_timeout_ms > max_connect_timeout_ms) {
                return fail(open_error::bad_service, "connect timeout out of range", &s.connect_timeout_ms);
            }
            if ((s.flags & ~service_known_flags) != 0) {
                return fail(open_error::bad_service, "unknown service flags", &s.flags);
            }
            if (s.reserved != 0) {
                return fail(open_error::bad_service, "reserved field not zero", &s.reserved);
            }
        }
        if (next_backend != _t._backend_count) {
            return fail(open_error::bad_service, "backends not used by any service", &_h->sections[sec_backends].count);
        }
        return true;
    }

    bool records(const format::rrset& r) noexcept {
        if (r.record_first != _next_record) {
            return fail(open_error::bad_rrset, "records not contiguous", &r.record_first);
        }
        if (r.record_count == 0 || r.record_count > _t._record_count - _next_record) {
            return fail(open_error::bad_rrset, "record count zero or out of bounds", &r.record_count);
        }
        for (uint32_t k = r.record_first; k < r.record_first + r.record_count; ++k) {
            const format::record& rec = _t._records[k];
            if (rec.type != type_a && rec.type != type_aaaa) {
                return fail(open_error::bad_record, "record type neither A nor AAAA", &rec.type);
            }
            if (rec.reserved != 0) {
                return fail(open_error::bad_record, "reserved field not zero", &rec.reserved);
            }
            if (rec.type == type_a && !all_zero(rec.addr + 4, 12)) {
                return fail(open_error::bad_record, "A address not zero-padded", rec.addr + 4);
            }
        }
        _next_record += r.record_count;
        return true;
    }

    bool acl(const format::zone& z) noexcept {
        if (z.acl_first != _next_acl) {
            return fail(open_error::bad_zone, "ACLs not contiguous", &z.acl_first);
        }
        if (z.acl_count > _t._acl_count - _next_acl) {
            return fail(open_error::bad_zone, "ACL count out of bounds", &z.acl_count);
        }
        for (uint32_t k = z.acl_first; k < z.acl_first + z.acl_count; ++k) {
            const acl_entry& a = _t._acl[k];
            if (a.endpoint >= _t._endpoint_count) {
                return fail(open_error::bad_acl, "ACL names no endpoint", &a.endpoint);
            }
            if (k > z.acl_first && a.endpoint <= _t._acl[k - 1].endpoint) {
                return fail(open_error::bad_acl, "ACL not strictly ascending", &a.endpoint);
            }
            const format::endpoint& e = _t._endpoints[a.endpoint];
            if (a.tag != _t._endpoint_index[e.index_slot].tag) {
                return fail(open_error::bad_acl, "ACL tag is not the endpoint's CN tag", &a.tag);
            }
            if (e.revoked) {
                return fail(open_error::bad_acl, "ACL names a revoked endpoint", &a.endpoint);
            }
        }
        _next_acl += z.acl_count;
        return true;
    }

    bool zones() noexcept {
        uint32_t next_rrset = 0;
        for (uint32_t zi = 0; zi < _t._zone_count; ++zi) {
            const format::zone& z = _t._zones[zi];
            if (!fresh(z.name)) {
                return false;
            }
            std::string_view zname = text(z.name);
            if (!valid_name(zname)) {
                return fail(open_error::bad_name, "zone name not a lower-case DNS name", &z.name);
            }
            if (z.service == none) {
                if (!fresh(z.service_cn)) {
                    return false;
                }
                if (z.service_cn.length != 0) {
                    return fail(open_error::bad_zone, "service CN without a service", &z.service_cn);
                }
            } else if (z.service >= _t._service_count) {
                return fail(open_error::bad_zone, "service index out of bounds", &z.service);
            } else if (z.service_cn.offset != _t._services[z.service].cn.offset ||
                       z.service_cn.length != _t._services[z.service].cn.length) {
                return fail(open_error::bad_zone, "service CN is not the service's", &z.service_cn);
            }
            if (z.reserved != 0) {
                return fail(open_error::bad_zone, "reserved field not zero", &z.reserved);
            }
            if (z.rrset_first != next_rrset) {
                return fail(open_error::bad_zone, "record sets not contiguous", &z.rrset_first);
            }
            if (z.rrset_count > _t._rrset_count - next_rrset) {
                return fail(open_error::bad_zone, "record set count out of bounds", &z.rrset_count);
            }
            if (z.apex_rrset != none && (z.apex_rrset != z.rrset_first || z.rrset_count == 0)) {
                return fail(open_error::bad_zone, "apex record set is not the zone's first", &z.apex_rrset);
            }
            if (!acl(z)) {
                return false;
            }
            if (z.index_slot > _t._names_mask || _t._names[z.index_slot].zone != zi ||
                _t._names[z.index_slot].rrset != z.apex_rrset) {
                return fail(open_error::bad_zone, "index slot does not point back at the zone", &z.index_slot);
            }
            if (!index_entry(z.index_slot, zname)) {
                return false;
            }
            for (uint32_t ri = z.rrset_first; ri < z.rrset_first + z.rrset_count; ++ri) {
                const format::rrset& r = _t._rrsets[ri];
                if (r.zone != zi) {
                    return fail(open_error::bad_rrset, "record set of another zone", &r.zone);
                }
                if (ri == z.apex_rrset) {
                    if (r.owner.offset != z.name.offset || r.owner.length != z.name.length) {
                        return fail(open_error::bad_string, "apex owner is not the zone name", &r.owner);
                    }
                    if (r.index_slot != z.index_slot) {
                        return fail(open_error::bad_rrset, "apex index slot is not the zone's", &r.index_slot);
                    }
                } else {
                    if (!fresh(r.owner)) {
                        return false;
                    }
                    std::string_view owner = text(r.owner);
                    if (!valid_name(owner)) {
                        return fail(open_error::bad_name, "owner not a lower-case DNS name", &r.owner);
                    }
                    if (owner.size() <= zname.size() + 1 || owner[owner.size() - zname.size() - 1] != '.' ||
                        owner.substr(owner.size() - zname.size()) != zname) {
                        return fail(open_error::bad_rrset, "owner not under its zone", &r.owner);
                    }
                    if (r.index_slot > _t._names_mask || _t._names[r.index_slot].zone != zi ||
                        _t._names[r.index_slot].rrset != ri) {
                        return fail(open_error::bad_rrset, "index slot does not point back at the record set",
                                    &r.index_slot);
                    }
                    if (!index_entry(r.index_slot, owner)) {
                        return false;
                    }
                }
                if (!records(r)) {
                    return false;
                }
            }
            next_rrset += z.rrset_count;
        }
        if (next_rrset != _t._rrset_count) {
            return fail(open_error::bad_rrset, "record sets of no zone", &_h->sections[sec_rrsets].count);
        }
        if (_next_record != _t._record_count) {
            return fail(open_error::bad_record, "records of no record set", &_h->sections[sec_records].count);
        }
        if (_next_acl != _t._acl_count) {
            return fail(open_error::bad_acl, "ACL entries of no zone", &_h->sections[sec_acl].count);
        }
        if (_cursor != _t._strings_size) {
            return fail(open_error::bad_string, "string pool bytes no field refers to",
                        &_h->sections[sec_strings].count);
        }
        // Every apex and owner has its own slot pointing back at it; as many
        // slots are occupied: slots and names correspond one to one.
        if (_index_entries != _occupied_names) {
            return fail(open_error::bad_index, "name index does not hold every name once", &_h->sections[sec_names]);
        }
        if (_longest_probe != _t._name_max_probe) {
            return fail(open_error::bad_header, "name probe limit is not the longest displacement",
                        &_h->name_max_probe);
        }
        if (_longest_name != _t._name_max_length) {
            return fail(open_error::bad_header, "longest name length is not exact", &_h->name_max_length);
        }
        return true;
    }

    /// Slot pass: empty slots are all ones, occupied ones name a zone and a
    /// record set in bounds. zones() then proves the one-to-one correspondence.
    bool name_slots() noexcept {
        for (uint32_t i = 0; i <= _t._names_mask; ++i) {
            const name_slot& s = _t._names[i];
            if (s.zone == none) {
                if (s.tag != none || s.rrset != none) {
                    return fail(open_error::bad_index, "empty name slot not all ones", &s);
                }
            } else if (s.zone >= _t._zone_count || (s.rrset != none && s.rrset >= _t._rrset_count)) {
                return fail(open_error::bad_index, "name slot out of bounds", &s);
            } else {
                ++_occupied_names;
            }
        }
        return true;
    }

    /// The index entry of `name` (a zone apex or an owner) is at `slot`: its
    /// tag is the name's, it is within the probe limit of home, and a lookup
    /// from home reaches it (no hole, no equal name before it).
    bool index_entry(uint32_t slot, std::string_view name) noexcept {
        const uint32_t mask = _t._names_mask;
        const name_slot& s = _t._names[slot];
        uint64_t h = name_hash(_t._name_seed, name.data(), name.size());
        if (s.tag != uint32_t(h >> 32)) {
            return fail(open_error::bad_index, "name slot tag is not the name's hash", &s.tag);
        }
        uint32_t home = uint32_t(h) & mask;
        uint32_t distance = (slot - home) & mask;
        if (distance > _t._name_max_probe) {
            return fail(open_error::bad_index, "name slot beyond the probe limit", &s);
        }
        for (uint32_t j = home; j != slot; j = (j + 1) & mask) {
            const name_slot& o = _t._names[j];
            if (o.zone == none) {
                return fail(open_error::bad_index, "hole in a name probe sequence", &o);
            }
            std::string_view other;
            const str& on = o.rrset == none ? _t._zones[o.zone].name : _t._rrsets[o.rrset].owner;
            if (o.tag == s.tag && in_pool(on, other) && other == name) {
                return fail(open_error::bad_index, "duplicate owner name", &s);
            }
        }
        _longest_probe = std::max(_longest_probe, distance);
        _longest_name = std::max(_longest_name, uint32_t(name.size()));
        ++_index_entries;
        return true;
    }

    /// No owner may sit inside a zone nested under its own: for "x.db.corp" of
    /// zone "corp", "db.corp" must not be a zone apex. Then the first owner a
    /// suffix walk finds always belongs to the longest matching zone.
    bool nesting() noexcept {
        for (uint32_t ri = 0; ri < _t._rrset_count; ++ri) {
            const format::rrset& r = _t._rrsets[ri];
            const format::zone& z = _t._zones[r.zone];
            if (ri == z.apex_rrset) {
                continue;
            }
            std::string_view owner = text(r.owner);
            size_t zlen = z.name.length;
            if (owner.substr(0, owner.size() - zlen - 1).find('.') == std::string_view::npos) {
                continue; // one label above the zone: nothing in between
            }
            uint64_t h = hash_start(_t._name_seed);
            // Hash backwards; at each label start between owner and zone, probe.
            for (size_t i = owner.size(); i-- > 0;) {
                if (owner[i] == '.' && owner.size() - i - 1 > zlen) {
                    const char* suffix = owner.data() + i + 1;
                    size_t len = owner.size() - i - 1;
                    if (const name_slot* s = _t.probe_name(fmix64(h), suffix, len)) {
                        if (s->rrset == none || s->rrset == _t._zones[s->zone].apex_rrset) {
                            return fail(open_error::bad_rrset, "owner inside a nested zone", &r.owner);
                        }
                    }
                }
                h = hash_step(h, uint8_t(owner[i]));
            }
        }
        return true;
    }

    const std::byte* _base;
    size_t _size;
    const format::header* _h = nullptr;
    table _t;
    open_result _res;
    uint32_t _cursor = 0;
    uint32_t _next_record = 0;
    uint32_t _next_acl = 0;
    uint32_t _occupied_names = 0;
    uint32_t _index_entries = 0;
    uint32_t _longest_probe = 0;
    uint32_t _longest_name = 0;
};

} // namespace detail

const char* to_string(open_error e) noexcept {
    switch (e) {
    case open_error::none:
        return "none";
    case open_error::too_small:
        return "too_small";
    case open_error::misaligned:
        return "misaligned";
    case open_error::bad_magic:
        return "bad_magic";
    case open_error::bad_version:
        return "bad_version";
    case open_error::bad_size:
        return "bad_size";
    case open_error::bad_checksum:
        return "bad_checksum";
    case open_error::bad_header:
        return "bad_header";
    case open_error::bad_layout:
        return "bad_layout";
    case open_error::bad_string:
        return "bad_string";
    case open_error::bad_name:
        return "bad_name";
    case open_error::bad_zone:
        return "bad_zone";
    case open_error::bad_rrset:
        return "bad_rrset";
    case open_error::bad_record:
        return "bad_record";
    case open_error::bad_service:
        return "bad_service";
    case open_error::bad_backend:
        return "bad_backend";
    case open_error::bad_acl:
        return "bad_acl";
    case open_error::bad_endpoint:
        return "bad_endpoint";
    case open_error::bad_index:
        return "bad_index";
    }
    return "unknown";
}

open_result open(std::span<const std::byte> blob) noexcept {
    return detail::validator(blob).run();
}

std::string_view table::string(format::str s) const noexcept {
    // Validated strings are always in bounds; a str the caller made up may not be.
    if (s.offset > _strings_size || s.length > _strings_size - s.offset) {
        return {};
    }
    return {_strings + s.offset, s.length};
}

std::string_view table::slot_name(const format::name_slot& s) const noexcept {
    const format::str& n = s.rrset == none ? _zones[s.zone].name : _rrsets[s.rrset].owner;
    return {_strings + n.offset, n.length};
}

const format::name_slot* table::probe_name(uint64_t hash, const char* name, size_t len) const noexcept {
    const uint32_t tag = uint32_t(hash >> 32);
    uint32_t i = uint32_t(hash) & _names_mask;
    for (uint32_t d = 0; d <= _name_max_probe; ++d, i = (i + 1) & _names_mask) {
        const format::name_slot& s = _names[i];
        if (s.zone == none) {
            return nullptr;
        }
        if (s.tag == tag) {
            std::string_view n = slot_name(s);
            if (n.size() == len && std::memcmp(n.data(), name, len) == 0) {
                return &s;
            }
        }
    }
    return nullptr;
}

name_match table::find(std::string_view name) const noexcept {
    size_t n = name.size();
    if (n != 0 && name[n - 1] == '.') {
        --n;
    }
    if (n == 0 || n > format::max_name_length || _names == nullptr) {
        return {};
    }
    // One backward pass: fold to lower case into `buf`, hash, and remember the
    // hash state at each label start (suffixes, shortest first).
    char buf[format::max_name_length];
    uint32_t starts[format::max_name_length / 2 + 1];
    uint64_t states[format::max_name_length / 2 + 1];
    uint32_t labels = 0;
    uint32_t label_len = 0;
    uint64_t h = format::hash_start(_name_seed);
    for (size_t i = n; i-- > 0;) {
        auto c = format::fold(uint8_t(name[i]));
        if (c == '.') {
            if (label_len == 0) {
                return {};
            }
            starts[labels] = uint32_t(i + 1);
            states[labels] = h;
            ++labels;
            label_len = 0;
        } else if (++label_len > format::max_label_length) {
            return {};
        }
        buf[i] = char(c);
        h = (h ^ c) * format::fnv_prime;
    }
    if (label_len == 0) {
        return {};
    }
    starts[labels] = 0;
    states[labels] = h;
    ++labels;
    // Longest first: the whole name, then each shorter suffix.
    for (uint32_t k = labels; k-- > 0;) {
        size_t len = n - starts[k];
        if (len > _name_max_length) {
            continue;
        }
        if (const format::name_slot* s = probe_name(format::fmix64(states[k]), buf + starts[k], len)) {
            return {s->zone, k == labels - 1 ? s->rrset : none};
        }
    }
    return {};
}

uint32_t table::find_endpoint(std::string_view cn) const noexcept {
    if (cn.empty() || cn.size() > format::max_cn_length || _endpoint_index == nullptr) {
        return none;
    }
    uint64_t h = format::cn_hash(_endpoint_seed, cn.data(), cn.size());
    const uint32_t tag = uint32_t(h >> 32);
    uint32_t i = uint32_t(h) & _endpoint_mask;
    for (uint32_t d = 0; d <= _endpoint_max_probe; ++d, i = (i + 1) & _endpoint_mask) {
        const format::endpoint_slot& s = _endpoint_index[i];
        if (s.endpoint == none) {
            return none;
        }
        if (s.tag == tag) {
            const format::str& c = _endpoints[s.endpoint].cn;
            if (c.length == cn.size() && std::memcmp(_strings + c.offset, cn.data(), cn.size()) == 0) {
                return s.endpoint;
            }
        }
    }
    return none;
}

std::string_view table::zone_name(uint32_t zone) const noexcept {
    return zone < _zone_count ? std::string_view(_strings + _zones[zone].name.offset, _zones[zone].name.length)
                              : std::string_view();
}

uint32_t table::zone_service(uint32_t zone) const noexcept {
    return zone < _zone_count ? _zones[zone].service : none;
}

uint32_t table::zone_apex(uint32_t zone) const noexcept {
    return zone < _zone_count ? _zones[zone].apex_rrset : none;
}

uint32_t table::zone_rrset_first(uint32_t zone) const noexcept {
    return zone < _zone_count ? _zones[zone].rrset_first : 0;
}

uint32_t table::zone_rrset_count(uint32_t zone) const noexcept {
    return zone < _zone_count ? _zones[zone].rrset_count : 0;
}

std::span<const format::acl_entry> table::zone_acl(uint32_t zone) const noexcept {
    if (zone >= _zone_count) {
        return {};
    }
    return {_acl + _zones[zone].acl_first, _zones[zone].acl_count};
}

bool table::allows(uint32_t zone, uint32_t endpoint) const noexcept {
    auto acl = zone_acl(zone);
    auto it = std::lower_bound(acl.begin(), acl.end(), endpoint,
                               [](const format::acl_entry& a, uint32_t e) { return a.endpoint < e; });
    return it != acl.end() && it->endpoint == endpoint;
}

std::string_view table::rrset_owner(uint32_t rrset) const noexcept {
    return rrset < _rrset_count ? std::string_view(_strings + _rrsets[rrset].owner.offset, _rrsets[rrset].owner.length)
                                : std::string_view();
}

uint32_t table::rrset_zone(uint32_t rrset) const noexcept {
    return rrset < _rrset_count ? _rrsets[rrset].zone : none;
}

std::span<const format::record> table::records(uint32_t rrset) const noexcept {
    if (rrset >= _rrset_count) {
        return {};
    }
    return {_records + _rrsets[rrset].record_first, _rrsets[rrset].record_count};
}

service_view table::service(uint32_t service) const noexcept {
    if (service >= _service_count) {
        return {};
    }
    const format::service& s = _services[service];
    return {
        std::string_view(_strings + s.cn.offset, s.cn.length),
        std::string_view(_strings + s.name.offset, s.name.length),
        std::span(_backends + s.backend_first, s.backend_count),
        s.total_weight,
        s.connect_timeout_ms,
        s.flags,
    };
}

const format::backend* table::pick_backend(uint32_t service, uint32_t r) const noexcept {
    if (service >= _service_count || _services[service].total_weight == 0) {
        return nullptr;
    }
    const format::service& s = _services[service];
    uint32_t x = r % s.total_weight;
    for (uint32_t b = s.backend_first; b < s.backend_first + s.backend_count; ++b) {
        if (x < _backends[b].weight) {
            return &_backends[b];
        }
        x -= _backends[b].weight;
    }
    return nullptr; // unreachable for a validated table: the weights sum to total_weight
}

endpoint_view table::endpoint(uint32_t id) const noexcept {
    if (id >= _endpoint_count) {
        return {};
    }
    const format::endpoint& e = _endpoints[id];
    return {
        id,
        std::string_view(_strings + e.cn.offset, e.cn.length),
        std::string_view(_strings + e.name.offset, e.name.length),
        std::string_view(_strings + e.serial.offset, e.serial.length),
        e.not_after,
        e.kind,
        e.revoked != 0,
    };
}

} // namespace zt::table
