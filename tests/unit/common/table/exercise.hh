// Calls every lookup of a table: shared by the unit tests and the fuzz target.
#pragma once

#include "common/table/reader.hh"

#include <cstdint>
#include <string>

namespace zt::table::test {

/// Calls every lookup of `t` on every id (and one past the end) and on names
/// derived from the table, plus some that miss; returns a value so nothing is
/// optimised away. Must never crash on a table that open() accepted.
inline uint64_t exercise(const table& t) {
    uint64_t acc = t.generation();
    for (uint32_t z = 0; z <= t.zone_count(); ++z) {
        std::string name(t.zone_name(z));
        auto m = t.find(name);
        acc += m.zone + m.rrset;
        acc += t.find("x.y." + name).zone;
        acc += t.zone_service(z) + t.zone_apex(z) + t.zone_rrset_first(z) + t.zone_rrset_count(z);
        for (const auto& e : t.zone_acl(z)) {
            acc += e.endpoint + t.allows(z, e.endpoint);
        }
        acc += t.allows(z, 0) + t.allows(z, none);
    }
    for (uint32_t r = 0; r <= t.rrset_count(); ++r) {
        std::string owner(t.rrset_owner(r));
        acc += t.find(owner).rrset + t.rrset_zone(r);
        for (const auto& rec : t.records(r)) {
            for (uint8_t b : address(rec)) {
                acc += b;
            }
        }
    }
    for (uint32_t s = 0; s <= t.service_count(); ++s) {
        auto v = t.service(s);
        acc += v.cn.size() + v.name.size() + v.total_weight + v.connect_timeout_ms;
        for (const auto& b : v.backends) {
            acc += b.port + t.string(b.host).size() + address(b).size();
        }
        for (uint32_t r = 0; r < 8; ++r) {
            const auto* b = t.pick_backend(s, r * 2654435761u);
            acc += b ? b->port : 0;
        }
    }
    for (uint32_t e = 0; e <= t.endpoint_count(); ++e) {
        auto v = t.endpoint(e);
        acc += t.find_endpoint(v.cn) + uint64_t(v.not_after) + v.kind + v.revoked + v.name.size() + v.serial.size();
    }
    for (const char* n : {"", ".", "..", "a..b", "com", "www.example.com", "x.", "-.-", "\xff\xfe.corp"}) {
        acc += t.find(n).zone;
    }
    acc += t.find(std::string(300, 'a')).zone + t.find(std::string(64, 'a') + ".corp").zone;
    acc += t.find_endpoint("") + t.find_endpoint(std::string(100, 'c'));
    acc += t.string({0xffffffffu, 1}).size() + t.string({1, 0xffffffffu}).size();
    return acc;
}

} // namespace zt::table::test
