// Parsing and validation of the four config files (simdjson). Every problem is
// reported as file + JSON path + message; a config with any error is never used.
// Control plane and tools only.
#pragma once

#include "common/config/model.hh"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zt::config {

/// The value of a parse, or the problems that stopped it (never both used).
template <typename T>
struct parsed {
    T value{};
    std::vector<error> errors;
    bool ok() const noexcept { return errors.empty(); }
};

// File names as they appear in the data dir and in error messages.
inline constexpr std::string_view zones_file = "zones.json";
inline constexpr std::string_view routes_file = "routes.json";
inline constexpr std::string_view endpoints_file = "endpoints.json";
inline constexpr std::string_view appliance_file = "ztdns.json";

parsed<std::vector<zone>> parse_zones(std::string_view json);
parsed<std::vector<route>> parse_routes(std::string_view json);
parsed<std::vector<endpoint>> parse_endpoints(std::string_view json);
parsed<appliance> parse_appliance(std::string_view json);

/// Checks that the files agree: each zone's service_cn is a route, every
/// allowed endpoint is registered and not revoked, no domain belongs to two
/// services, a route's domain that has a zone names the same service.
std::vector<error> cross_check(const config& c);

/// Reads and validates the four files of a data dir. A missing zones, routes
/// or endpoints file is an empty one; a missing ztdns.json is an error.
parsed<config> load_dir(const std::string& dir);

// ---- value checks shared with the CLI ----

/// Lower-cases, strips one trailing dot and validates a DNS name (labels
/// 1-63 bytes of letters, digits, '-', '_'; at most 253 characters).
/// Returns the normalized name, or nullopt and sets `why`.
std::optional<std::string> normalize_dns_name(std::string_view name, std::string& why);

/// Parses "A 203.0.113.50" / "AAAA 2001:db8::1".
std::optional<record> parse_record(std::string_view text, std::string& why);

/// Validates "host:port" or "[v6]:port" (numeric addresses only).
bool valid_listen_address(std::string_view s, std::string& why);

/// True for a plausible CN: 1-64 bytes of [A-Za-z0-9._-].
bool valid_cn(std::string_view cn) noexcept;

/// "2036-11-23T00:16:00Z" <-> Unix seconds.
std::optional<int64_t> parse_time(std::string_view iso8601);
std::string format_time(int64_t unix_seconds);

/// The JSON path of an object key: `.name` for identifier-like keys,
/// `["db.internal.corp"]` otherwise (jq syntax).
std::string key_path(std::string_view key);

} // namespace zt::config
