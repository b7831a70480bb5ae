// The route table compiler: a validated config (zones, routes, endpoints) plus
// a generation -> the flat blob of common/table/format.hh. Resolves backend
// host names (blocking getaddrinfo: control plane only, never on a shard).
#pragma once

#include "common/config/model.hh"

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace zt::control {

/// One resolved backend address, or why there is none.
struct resolved_address {
    uint8_t family = 0; ///< format::family_ipv4 / family_ipv6; 0 when resolution failed
    std::array<uint8_t, 16> addr{};
    std::string error; ///< e.g. "Name or service not known"
};

/// Numeric IPv4/IPv6 literals (also "[v6]") with inet_pton, else getaddrinfo
/// (AF_UNSPEC, SOCK_STREAM; the first answer wins). Blocking; control plane only.
resolved_address resolve_host(const std::string& host);

struct compile_options {
    /// Resolves backend host names that are not numeric literals (literals
    /// never reach it). Empty: resolve_host. Tests inject their own.
    std::function<resolved_address(const std::string& host)> resolve;
    /// The first hash seed tried for both indexes (the compiler moves on to
    /// the next seeds, then to a larger index, while a probe sequence would
    /// exceed format::max_probe_limit). Same config + seed = same bytes.
    uint64_t seed = 0x7a74646e73ull; // "ztdns"
};

struct compile_result {
    std::vector<std::byte> blob;        ///< the table, when ok()
    std::optional<config::error> error; ///< the first problem: file, JSON path, message
    bool ok() const noexcept { return !error.has_value(); }
};

/// Compiles `c` into a route table with `generation`. The config is expected
/// to have passed config::cross_check; what can still fail here (a host that
/// does not resolve, a record inside a nested zone, limits) comes back as an
/// error naming file and key, e.g. `routes.json: .s1234abcd5678.host: cannot
/// resolve "db.example": Name or service not known`. Revoked endpoints are left
/// out of every ACL. Control thread; may throw std::bad_alloc only.
compile_result compile(const config::config& c, uint64_t generation, const compile_options& options = {});

} // namespace zt::control
