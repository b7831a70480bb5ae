// Shared fixtures of the route table tests: sample configs (nested zones,
// records, ACLs, services with several backends, revoked endpoints) and helpers.
#pragma once

#include "common/config/model.hh"
#include "common/table/reader.hh"
#include "tests/unit/common/table/exercise.hh"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace zt::table::test {

/// Endpoint CNs of sample_config().
inline constexpr const char* cn_laptop = "c00000000001"; // client, in internal.corp and db.internal.corp
inline constexpr const char* cn_phone = "c00000000002";  // client, revoked, listed for db.internal.corp
inline constexpr const char* cn_admin = "c00000000003";  // client, in internal.corp and api.internal.corp
inline constexpr const char* cn_db = "s1234abcd5678";    // service (PostgreSQL), in db.internal.corp
inline constexpr const char* cn_api = "s5678efgh9012";   // service (API, 3 backends)

config::record a(const char* text);
config::record aaaa(const char* text);

/// internal.corp (apex, "wiki", "a.b.c.deep"), db.internal.corp (apex A+AAAA,
/// "replica"), api.internal.corp (no records), example.org (no service).
config::config sample_config();

/// Few names and strings: for the byte-by-byte corruption test.
config::config small_config();

/// `zones` zones "z<i>.bench.corp", each with an apex and a "www" record, a
/// service each 16 zones and `endpoints` endpoints; backends are numeric.
config::config generated_config(size_t zones, size_t endpoints);

/// compile() that must succeed (fails the test otherwise).
std::vector<std::byte> compile_ok(const config::config& c, uint64_t generation);

/// A fresh directory under /tmp.
std::string temp_dir(const char* prefix);

} // namespace zt::table::test
