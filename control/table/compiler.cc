// The route table compiler: config -> sections -> hash indexes -> blob, in the
// canonical order that the reader checks (docs/route-table.md).
#include "control/table/compiler.hh"

#include "common/config/parse.hh"
#include "common/table/format.hh"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <string_view>
#include <unordered_map>

namespace zt::control {

namespace f = table::format;

namespace {

/// Lower case, labels of [a-z0-9_-] (1..63), at most 253 bytes, no empty label.
bool valid_name(std::string_view name) {
    if (name.empty() || name.size() > f::max_name_length) {
        return false;
    }
    size_t label = 0;
    for (char ch : name) {
        auto c = uint8_t(ch);
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') ||
                   ++label > f::max_label_length) {
            return false;
        }
    }
    return label != 0;
}

bool plausible_cn(std::string_view s) {
    return !s.empty() && s.size() <= f::max_cn_length &&
           std::all_of(s.begin(), s.end(), [](char ch) { return uint8_t(ch) > 0x20 && uint8_t(ch) < 0x7f; });
}

std::optional<resolved_address> numeric(std::string host) {
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    resolved_address r;
    if (::inet_pton(AF_INET, host.c_str(), r.addr.data()) == 1) {
        r.family = f::family_ipv4;
        return r;
    }
    if (::inet_pton(AF_INET6, host.c_str(), r.addr.data()) == 1) {
        r.family = f::family_ipv6;
        return r;
    }
    return std::nullopt;
}

/// Appends strings to the pool in the order they are referenced.
struct string_pool {
    std::string bytes;
    f::str add(std::string_view s) {
        f::str r{uint32_t(bytes.size()), uint32_t(s.size())};
        bytes.append(s);
        return r;
    }
    /// Appends `prefix` + `suffix` folded to lower case, without one trailing
    /// dot; nullopt (and nothing appended) unless that is a valid DNS name.
    std::optional<f::str> add_name(std::string_view prefix, std::string_view suffix = {}) {
        size_t start = bytes.size();
        for (char c : prefix) {
            bytes += char(f::fold(uint8_t(c)));
        }
        bytes.append(suffix);
        if (bytes.size() > start && bytes.back() == '.') {
            bytes.pop_back();
        }
        if (!valid_name(std::string_view(bytes).substr(start))) {
            bytes.resize(start);
            return std::nullopt;
        }
        return f::str{uint32_t(start), uint32_t(bytes.size() - start)};
    }
    std::string_view view(const f::str& s) const { return std::string_view(bytes).substr(s.offset, s.length); }
};

struct index_layout {
    uint64_t seed = 0;
    uint32_t max_probe = 0;
    std::vector<uint32_t> slot_of;  ///< entry -> slot
    std::vector<uint32_t> entry_at; ///< slot -> entry, or none
    std::vector<uint64_t> hash_of;  ///< entry -> hash
};

/// Open addressing with linear probing, load factor at most 1/2. Tries seeds
/// seed, seed + 1, ... and doubles the capacity every 4 tries until no entry
/// sits more than max_probe_limit slots from home. Equal names are reported
/// in `duplicate` (earlier entry, later entry) and the index is not finished.
template <typename NameOf, typename Hash>
index_layout build_index(size_t n, uint64_t seed, NameOf name_of, Hash hash,
                         std::optional<std::pair<uint32_t, uint32_t>>& duplicate) {
    index_layout l;
    uint64_t cap = std::bit_ceil(std::max<uint64_t>(8, 2 * uint64_t(n)));
    for (uint32_t attempt = 0;; ++attempt) {
        if (attempt > 0 && attempt % 4 == 0) {
            cap *= 2;
        }
        l.seed = seed + attempt;
        l.max_probe = 0;
        l.entry_at.assign(cap, f::none);
        l.slot_of.assign(n, f::none);
        l.hash_of.resize(n);
        const uint64_t mask = cap - 1;
        bool ok = true;
        for (uint32_t e = 0; e < n && ok; ++e) {
            std::string_view name = name_of(e);
            uint64_t h = hash(l.seed, name.data(), name.size());
            l.hash_of[e] = h;
            uint64_t i = h & mask;
            uint32_t d = 0;
            while (l.entry_at[i] != f::none) {
                uint32_t other = l.entry_at[i];
                if (l.hash_of[other] == h && name_of(other) == name) {
                    duplicate = {other, e};
                    return l;
                }
                i = (i + 1) & mask;
                if (++d > f::max_probe_limit) {
                    ok = false;
                    break;
                }
            }
            if (ok) {
                l.entry_at[i] = e;
                l.slot_of[e] = uint32_t(i);
                l.max_probe = std::max(l.max_probe, d);
            }
        }
        if (ok) {
            return l;
        }
    }
}

template <typename T>
void put(std::vector<std::byte>& out, uint64_t offset, const std::vector<T>& v) {
    if (!v.empty()) {
        std::memcpy(out.data() + offset, v.data(), v.size() * sizeof(T));
    }
}

class compiler {
public:
    compiler(const config::config& c, const compile_options& o) : _c(c), _o(o) {}

    compile_result run(uint64_t generation) {
        compile_result r;
        if (!endpoints() || !services() || !zones()) {
            r.error = std::move(_error);
            return r;
        }
        if (!serialize(generation, r.blob)) {
            r.error = std::move(_error);
        }
        return r;
    }

private:
    bool fail(std::string_view file, std::string path, std::string message) {
        _error = config::error{std::string(file), std::move(path), std::move(message)};
        return false;
    }

    bool endpoints() {
        for (const auto& e : _c.endpoints) {
            if (!plausible_cn(e.cn)) {
                return fail(config::endpoints_file, config::key_path(e.cn), "CN must be 1-64 printable characters");
            }
            auto id = uint32_t(_endpoints.size());
            if (!_endpoint_ids.emplace(e.cn, id).second) {
                return fail(config::endpoints_file, config::key_path(e.cn), "CN registered twice");
            }
            f::endpoint out{};
            out.cn = _strings.add(e.cn);
            out.name = _strings.add(e.name);
            out.serial = _strings.add(e.serial);
            out.not_after = e.not_after;
            out.kind = e.kind == config::endpoint_kind::service ? f::kind_service : f::kind_client;
            out.revoked = e.revoked ? 1 : 0;
            _endpoints.push_back(out);
        }
        return true;
    }

    std::optional<resolved_address> resolve(const std::string& host, const std::string& path) {
        if (auto n = numeric(host)) {
            return n;
        }
        auto it = _resolved.find(host);
        if (it == _resolved.end()) {
            it = _resolved.emplace(host, _o.resolve ? _o.resolve(host) : resolve_host(host)).first;
        }
        if (it->second.family != f::family_ipv4 && it->second.family != f::family_ipv6) {
            fail(config::routes_file, path, fmt::format("cannot resolve \"{}\": {}", host, it->second.error));
            return std::nullopt;
        }
        return it->second;
    }

    bool services() {
        for (const auto& r : _c.routes) {
            std::string rp = config::key_path(r.service_cn);
            if (!plausible_cn(r.service_cn)) {
                return fail(config::routes_file, rp, "service CN must be 1-64 printable characters");
            }
            auto id = uint32_t(_services.size());
            if (!_service_ids.emplace(r.service_cn, id).second) {
                return fail(config::routes_file, rp, "service listed twice");
            }
            if (r.backends.empty()) {
                return fail(config::routes_file, rp + ".backends", "needs at least one backend");
            }
            if (r.connect_timeout_ms == 0 || r.connect_timeout_ms > f::max_connect_timeout_ms) {
                return fail(
                    config::routes_file, rp + ".connect_timeout_ms",
                    fmt::format("{} is not a timeout of 1..{} ms", r.connect_timeout_ms, f::max_connect_timeout_ms));
            }
            f::service s{};
            s.cn = _strings.add(r.service_cn);
            s.name = _strings.add(r.name);
            s.backend_first = uint32_t(_backends.size());
            s.backend_count = uint32_t(r.backends.size());
            s.connect_timeout_ms = r.connect_timeout_ms;
            s.flags = (r.health_check ? f::service_health_check : 0) |
                      (r.via_service_endpoint ? f::service_via_service_endpoint : 0);
            uint64_t weight = 0;
            for (size_t i = 0; i < r.backends.size(); ++i) {
                const auto& b = r.backends[i];
                std::string bp = r.seed_host_port ? rp : fmt::format("{}.backends[{}]", rp, i);
                if (b.port == 0) {
                    return fail(config::routes_file, bp + ".port", "0 is not a port (1-65535)");
                }
                auto addr = resolve(b.host, bp + ".host");
                if (!addr) {
                    return false;
                }
                f::backend out{};
                out.host = _strings.add(b.host);
                out.family = addr->family;
                out.port = b.port;
                out.weight = b.weight;
                std::memcpy(out.addr, addr->addr.data(), addr->family == f::family_ipv4 ? 4 : 16);
                weight += b.weight;
                _backends.push_back(out);
            }
            if (weight > UINT32_MAX) {
                return fail(config::routes_file, rp + ".backends", "the weights add up to more than 2^32 - 1");
            }
            s.total_weight = uint32_t(weight);
            _services.push_back(s);
        }
        return true;
    }

    /// JSON paths, built only for error messages.
    std::string zone_path(uint32_t zc) const { return config::key_path(_c.zones[zc].name); }
    std::string record_path(uint32_t zc, uint32_t rc) const {
        return zone_path(zc) + ".records" + config::key_path(_c.zones[zc].records[rc].label);
    }

    bool zones() {
        for (uint32_t zc = 0; zc < _c.zones.size(); ++zc) {
            const auto& z = _c.zones[zc];
            auto zi = uint32_t(_zones.size());
            f::zone out{};
            auto name = _strings.add_name(z.name);
            if (!name) {
                return fail(config::zones_file, zone_path(zc), "not a valid DNS name");
            }
            out.name = *name;
            size_t apex_entry = _entries.size();
            _entries.push_back({zi, f::none, zc, f::none, true});
            out.service = f::none;
            if (z.service_cn.empty()) {
                out.service_cn = _strings.add("");
            } else {
                auto it = _service_ids.find(z.service_cn);
                if (it == _service_ids.end()) {
                    return fail(config::zones_file, zone_path(zc) + ".service_cn",
                                fmt::format("\"{}\" is not a service in routes.json", z.service_cn));
                }
                out.service = it->second;
                out.service_cn = _services[it->second].cn;
            }
            // ACL: registered, not revoked, ascending ids without duplicates.
            out.acl_first = uint32_t(_acl_ids.size());
            size_t acl_start = _acl_ids.size();
            for (size_t i = 0; i < z.allowed_endpoints.size(); ++i) {
                auto it = _endpoint_ids.find(z.allowed_endpoints[i]);
                if (it == _endpoint_ids.end()) {
                    return fail(
                        config::zones_file, fmt::format("{}.allowed_endpoints[{}]", zone_path(zc), i),
                        fmt::format("\"{}\" is not a registered endpoint (endpoints.json)", z.allowed_endpoints[i]));
                }
                if (!_endpoints[it->second].revoked) {
                    _acl_ids.push_back(it->second);
                }
            }
            std::sort(_acl_ids.begin() + ptrdiff_t(acl_start), _acl_ids.end());
            _acl_ids.erase(std::unique(_acl_ids.begin() + ptrdiff_t(acl_start), _acl_ids.end()), _acl_ids.end());
            out.acl_count = uint32_t(_acl_ids.size() - acl_start);

            // Record sets: the apex first, then the others in file order; empty ones dropped.
            out.rrset_first = uint32_t(_rrsets.size());
            out.apex_rrset = f::none;
            for (int pass = 0; pass < 2; ++pass) {
                for (uint32_t rc = 0; rc < z.records.size(); ++rc) {
                    const auto& rs = z.records[rc];
                    bool apex = rs.label == "@";
                    if (apex != (pass == 0) || rs.records.empty()) {
                        continue;
                    }
                    auto ri = uint32_t(_rrsets.size());
                    f::rrset r{};
                    r.zone = zi;
                    if (apex) {
                        if (out.apex_rrset != f::none) {
                            return fail(config::zones_file, record_path(zc, rc), "\"@\" listed twice");
                        }
                        out.apex_rrset = ri;
                        r.owner = out.name;
                        _entries[apex_entry].rrset = ri;
                    } else {
                        std::string suffix = "." + std::string(_strings.view(out.name));
                        auto owner = rs.label.empty() || rs.label.back() == '.' ? std::nullopt
                                                                                : _strings.add_name(rs.label, suffix);
                        if (!owner) {
                            return fail(config::zones_file, record_path(zc, rc),
                                        "not \"@\" or a relative name that makes a valid DNS name under the zone");
                        }
                        r.owner = *owner;
                        _entries.push_back({zi, ri, zc, rc, false});
                    }
                    r.record_first = uint32_t(_records.size());
                    r.record_count = uint32_t(rs.records.size());
                    for (const auto& rec : rs.records) {
                        f::record o{};
                        bool v4 = rec.rtype == config::record::type::a;
                        o.type = v4 ? f::type_a : f::type_aaaa;
                        std::memcpy(o.addr, rec.addr.data(), v4 ? 4 : 16);
                        _records.push_back(o);
                    }
                    _rrsets.push_back(r);
                }
            }
            out.rrset_count = uint32_t(_rrsets.size()) - out.rrset_first;
            _zones.push_back(out);
        }
        return true;
    }

    /// One name of the name index: a zone apex or the owner of a record set.
    struct entry {
        uint32_t zone;
        uint32_t rrset;    ///< none: the apex of a zone without "@" records
        uint32_t src_zone; ///< config indices, for error messages
        uint32_t src_rrset;
        bool apex;
    };

    std::string_view entry_name(const entry& e) const {
        return _strings.view(e.apex ? _zones[e.zone].name : _rrsets[e.rrset].owner);
    }

    /// Two names of the index are equal: say so at the record (or zone) to change.
    bool duplicate(const entry& first, const entry& later) {
        std::string name(entry_name(later));
        if (first.apex && later.apex) {
            return fail(config::zones_file, zone_path(later.src_zone), fmt::format("zone {} is defined twice", name));
        }
        if (first.apex || later.apex) {
            const entry& record = first.apex ? later : first;
            return fail(config::zones_file, record_path(record.src_zone, record.src_rrset),
                        fmt::format("\"{}\" is the apex of zone {}: put these records there as \"@\"", name, name));
        }
        return fail(config::zones_file, record_path(later.src_zone, later.src_rrset),
                    fmt::format("\"{}\" is already an owner in zone {}", name, _strings.view(_zones[first.zone].name)));
    }

    /// The entry named `name` in the built index, or none.
    uint32_t find_entry(const index_layout& l, uint64_t h, std::string_view name) const {
        const uint64_t mask = l.entry_at.size() - 1;
        for (uint64_t i = h & mask, d = 0; d <= l.max_probe; ++d, i = (i + 1) & mask) {
            uint32_t e = l.entry_at[i];
            if (e == f::none) {
                break;
            }
            if (l.hash_of[e] == h && entry_name(_entries[e]) == name) {
                return e;
            }
        }
        return f::none;
    }

    /// A record of a zone may not sit inside a zone nested under it: that
    /// name belongs to the nested zone (its ACL, its service).
    bool nesting(const index_layout& l) {
        for (const entry& e : _entries) {
            if (e.apex) {
                continue;
            }
            std::string_view owner = entry_name(e);
            size_t zlen = _zones[e.zone].name.length;
            if (owner.substr(0, owner.size() - zlen - 1).find('.') == std::string_view::npos) {
                continue;
            }
            for (size_t dot = owner.find('.'); owner.size() - dot - 1 > zlen; dot = owner.find('.', dot + 1)) {
                std::string_view suffix = owner.substr(dot + 1);
                uint32_t hit = find_entry(l, f::name_hash(l.seed, suffix.data(), suffix.size()), suffix);
                if (hit != f::none && _entries[hit].apex) {
                    return fail(config::zones_file, record_path(e.src_zone, e.src_rrset),
                                fmt::format("\"{}\" is inside zone {}: put this record there", owner, suffix));
                }
            }
        }
        return true;
    }

    bool serialize(uint64_t generation, std::vector<std::byte>& out) {
        std::optional<std::pair<uint32_t, uint32_t>> dup;
        auto name_of = [&](uint32_t e) { return entry_name(_entries[e]); };
        index_layout names = build_index(_entries.size(), _o.seed, name_of, f::name_hash, dup);
        if (dup) {
            return duplicate(_entries[dup->first], _entries[dup->second]);
        }
        if (!nesting(names)) {
            return false;
        }
        uint32_t longest_name = 0;
        std::vector<f::name_slot> name_slots(names.entry_at.size(), f::name_slot{f::none, f::none, f::none});
        for (uint32_t e = 0; e < _entries.size(); ++e) {
            const entry& en = _entries[e];
            uint32_t slot = names.slot_of[e];
            name_slots[slot] = {uint32_t(names.hash_of[e] >> 32), en.zone, en.rrset};
            if (en.apex) {
                _zones[en.zone].index_slot = slot;
            }
            if (en.rrset != f::none) {
                _rrsets[en.rrset].index_slot = slot;
            }
            longest_name = std::max(longest_name, uint32_t(name_of(e).size()));
        }

        auto cn_of = [&](uint32_t e) { return _strings.view(_endpoints[e].cn); };
        index_layout eps = build_index(_endpoints.size(), _o.seed, cn_of, f::cn_hash, dup);
        if (dup) { // endpoints() already refused equal CNs
            return fail(config::endpoints_file, config::key_path(cn_of(dup->second)), "CN registered twice");
        }
        std::vector<f::endpoint_slot> ep_slots(eps.entry_at.size(), f::endpoint_slot{f::none, f::none});
        for (uint32_t e = 0; e < _endpoints.size(); ++e) {
            ep_slots[eps.slot_of[e]] = {uint32_t(eps.hash_of[e] >> 32), e};
            _endpoints[e].index_slot = eps.slot_of[e];
        }
        std::vector<f::acl_entry> acl;
        acl.reserve(_acl_ids.size());
        for (uint32_t id : _acl_ids) {
            acl.push_back({id, ep_slots[_endpoints[id].index_slot].tag});
        }

        const uint64_t counts[f::section_count] = {
            _strings.bytes.size(), name_slots.size(), _zones.size(), _rrsets.size(),    _records.size(),
            _services.size(),      _backends.size(),  acl.size(),    _endpoints.size(), ep_slots.size(),
        };
        f::header h{};
        std::memcpy(h.magic, f::magic, sizeof h.magic);
        h.major = f::major_version;
        h.minor = f::minor_version;
        h.header_size = sizeof(f::header);
        h.generation = generation;
        h.name_seed = names.seed;
        h.endpoint_seed = eps.seed;
        h.name_max_probe = names.max_probe;
        h.name_max_length = longest_name;
        h.endpoint_max_probe = eps.max_probe;
        uint64_t offset = sizeof(f::header);
        for (uint32_t i = 0; i < f::section_count; ++i) {
            uint64_t bytes = counts[i] * f::element_size[i];
            if (offset + bytes > f::max_table_size) {
                return fail(config::zones_file, "", "the route table would exceed 2 GiB");
            }
            h.sections[i] = {uint32_t(offset), uint32_t(counts[i])};
            offset = f::align8(offset + bytes);
        }
        h.total_size = offset;

        out.assign(offset, std::byte{0});
        std::memcpy(out.data() + h.sections[f::sec_strings].offset, _strings.bytes.data(), _strings.bytes.size());
        put(out, h.sections[f::sec_names].offset, name_slots);
        put(out, h.sections[f::sec_zones].offset, _zones);
        put(out, h.sections[f::sec_rrsets].offset, _rrsets);
        put(out, h.sections[f::sec_records].offset, _records);
        put(out, h.sections[f::sec_services].offset, _services);
        put(out, h.sections[f::sec_backends].offset, _backends);
        put(out, h.sections[f::sec_acl].offset, acl);
        put(out, h.sections[f::sec_endpoints].offset, _endpoints);
        put(out, h.sections[f::sec_endpoint_index].offset, ep_slots);
        std::memcpy(out.data(), &h, sizeof h);
        h.checksum = f::checksum(out);
        std::memcpy(out.data() + offsetof(f::header, checksum), &h.checksum, sizeof h.checksum);
        return true;
    }

    const config::config& _c;
    const compile_options& _o;
    config::error _error;
    string_pool _strings;
    std::unordered_map<std::string_view, uint32_t> _endpoint_ids;
    std::unordered_map<std::string_view, uint32_t> _service_ids;
    std::unordered_map<std::string, resolved_address> _resolved;
    std::vector<entry> _entries; ///< the name index: every apex, every owner
    std::vector<f::endpoint> _endpoints;
    std::vector<f::service> _services;
    std::vector<f::backend> _backends;
    std::vector<f::zone> _zones;
    std::vector<f::rrset> _rrsets;
    std::vector<f::record> _records;
    std::vector<uint32_t> _acl_ids;
};

} // namespace

resolved_address resolve_host(const std::string& host) {
    if (auto n = numeric(host)) {
        return *n;
    }
    resolved_address r;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0) {
        r.error = rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc);
        return r;
    }
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            std::memcpy(r.addr.data(), &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, 4);
            r.family = f::family_ipv4;
            break;
        }
        if (ai->ai_family == AF_INET6) {
            std::memcpy(r.addr.data(), &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, 16);
            r.family = f::family_ipv6;
            break;
        }
    }
    ::freeaddrinfo(res);
    if (r.family == 0) {
        r.error = "no IPv4 or IPv6 address";
    }
    return r;
}

compile_result compile(const config::config& c, uint64_t generation, const compile_options& options) {
    return compiler(c, options).run(generation);
}

} // namespace zt::control
