// DNS helpers of the endpoint that the common codec does not have: building the catalog and SRV queries, reading
// their answers (PTR zone names, SRV ports), zone suffix matching, and the local answers of the stub (a truncated
// reply for UDP, the tunnel address). Pure and bounds-checked; the endpoint's single thread calls them.
#pragma once

#include "common/dns/wire.hh"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace zt::endpoint {

inline constexpr uint16_t type_ptr = 12;
inline constexpr uint16_t type_srv = 33;

/// The catalog name the DoT server answers: `_catalog._ztdns.<server_name>`.
std::string catalog_name(std::string_view server_name);
/// The SRV name of a private zone: `_ztdns._tcp.<zone>`.
std::string srv_name(std::string_view zone);

/// Writes a query (RD set, one question IN, an EDNS(0) OPT advertising 1232 bytes when `edns`) into `out`.
/// Returns its size, 0 when `name` is not a valid dotted name or `out` is too small.
size_t build_query(std::span<std::byte> out, uint16_t id, std::string_view name, uint16_t qtype, bool edns = true);

/// One resource record of a response, decoded enough for the catalog.
struct record {
    int section = 0;   ///< 0 answer, 1 authority, 2 additional
    std::string owner; ///< lower case, no trailing dot
    uint16_t type = 0;
    uint16_t cls = 0;
    uint32_t ttl = 0;
    size_t rdata_offset = 0; ///< in the message (names in rdata may point anywhere before)
    uint16_t rdata_size = 0;
};

/// Every record of `msg` (a response) after its question; nullopt when the message is malformed.
std::optional<std::vector<record>> read_records(std::span<const std::byte> msg);

/// What the catalog query returned.
struct catalog_answer {
    enum class kind : uint8_t {
        zones,  ///< NOERROR: `zones` is the complete list (possibly empty)
        none,   ///< NXDOMAIN: this CN may see no private zone
        failed, ///< SERVFAIL, REFUSED, malformed...: keep what we had
    } result = kind::failed;
    std::vector<std::string> zones; ///< lower case, sorted, unique
    bool truncated = false;         ///< the server listed what fits in 64 KiB
};

/// Reads the answer to the catalog query for `name` (already validated against the query by the caller).
catalog_answer parse_catalog(std::span<const std::byte> msg, std::string_view name);

/// The ports of the SRV answer for `name`, in record order, unique; empty when none (or not NOERROR).
std::vector<uint16_t> parse_srv_ports(std::span<const std::byte> msg, std::string_view name);

/// True when `name` is `zone` or a name under it ("a.db.corp" under "db.corp"). Both lower case, no trailing dot.
bool under_zone(std::string_view name, std::string_view zone) noexcept;

/// A plausible DNS name for a zone: 1..253 bytes of letters, digits, '-', '_' and dots, labels 1..63 bytes.
bool valid_zone_name(std::string_view name) noexcept;

/// The reply for a UDP client whose answer `resp` is larger than it allows: the answer's header (id, flags, rcode)
/// with TC set and the question of `q`, no records. Returns the size written (0 when `out` is too small).
size_t build_truncated(const dns::query& q, std::span<const std::byte> resp, std::span<std::byte> out) noexcept;

/// The header line the proxy sends on a parked service connection: "ZTDNS-TUNNEL <name> <client-cn>\n".
struct tunnel_header {
    enum class status : uint8_t { need_more, bad, ok } result = status::need_more;
    std::string name;
    std::string client_cn;
    size_t consumed = 0; ///< bytes of the line, '\n' included
};
inline constexpr size_t max_tunnel_header = 512;
tunnel_header parse_tunnel_header(std::span<const std::byte> bytes);

/// The line the proxy sends when it parks a service connection: "ZTDNS-PARKED <shard> <shards>\n" (a parked
/// connection stays on the shard the kernel gave it, so the endpoint keeps every shard supplied).
struct parked_line {
    enum class status : uint8_t { need_more, bad, ok, other } result = status::need_more; ///< other: not this line
    unsigned shard = 0;
    unsigned shards = 0;
    size_t consumed = 0;
};
parked_line parse_parked_line(std::span<const std::byte> bytes);

} // namespace zt::endpoint
