// DNS wire codec for the DoT service and the endpoint stub: query parsing, response building and the helpers for
// forwarded public names (id rewrite, response validation, cache TTLs). Pure, bounds-checked, non-allocating and
// noexcept: any shard thread may call any function here on untrusted bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace zt::dns {

inline constexpr size_t header_size = 12;
/// A message never exceeds what a 2-byte DoT/TCP length prefix can carry.
inline constexpr size_t max_message_size = 65535;
inline constexpr size_t max_label_size = 63;
/// Uncompressed wire form, labels and length bytes and the root byte (RFC 1035 §3.1).
inline constexpr size_t max_name_wire_size = 255;
/// Decoded names are at most 253 text bytes; 256 leaves room and is the size callers pass.
inline constexpr size_t name_buffer_size = 256;
/// More compression pointers than a 255-byte name has labels means a hostile chain.
inline constexpr size_t max_pointer_hops = 127;
/// RFC 1035 UDP limit without EDNS, and the floor for an EDNS requestor's payload size (RFC 6891 §6.2.3).
inline constexpr uint16_t classic_udp_size = 512;
/// RFC 8467 §4.1: responders pad to a multiple of this.
inline constexpr size_t response_padding_block = 468;

/// Resource record types this codec names; qtype/type fields are plain uint16_t so any value passes through.
namespace rr_type {
inline constexpr uint16_t a = 1;
inline constexpr uint16_t ns = 2;
inline constexpr uint16_t cname = 5;
inline constexpr uint16_t soa = 6;
inline constexpr uint16_t ptr = 12;
inline constexpr uint16_t srv = 33;
inline constexpr uint16_t aaaa = 28;
inline constexpr uint16_t opt = 41;
} // namespace rr_type

inline constexpr uint16_t class_in = 1;
/// EDNS(0) option code of RFC 7830 padding.
inline constexpr uint16_t edns_option_padding = 12;

/// Response codes we produce. Values above 15 need an OPT record (the upper 8 bits travel in its TTL field).
enum class rcode : uint16_t {
    noerror = 0,
    formerr = 1,
    servfail = 2,
    nxdomain = 3,
    notimp = 4,
    refused = 5,
    badvers = 16,
};

/// The fixed 12-byte header, host byte order.
struct header {
    uint16_t id = 0;
    uint16_t flags = 0;
    uint16_t qdcount = 0;
    uint16_t ancount = 0;
    uint16_t nscount = 0;
    uint16_t arcount = 0;

    bool qr() const noexcept { return (flags & 0x8000) != 0; }
    uint8_t opcode() const noexcept { return static_cast<uint8_t>((flags >> 11) & 0x0f); }
    bool aa() const noexcept { return (flags & 0x0400) != 0; }
    bool tc() const noexcept { return (flags & 0x0200) != 0; }
    bool rd() const noexcept { return (flags & 0x0100) != 0; }
    bool ra() const noexcept { return (flags & 0x0080) != 0; }
    bool ad() const noexcept { return (flags & 0x0020) != 0; }
    bool cd() const noexcept { return (flags & 0x0010) != 0; }
    /// The header's 4 rcode bits (an OPT record may extend them).
    uint8_t rcode_low() const noexcept { return static_cast<uint8_t>(flags & 0x000f); }
};

/// Why a query was not accepted. `reply_for` says what to send back.
enum class query_error : uint8_t {
    none = 0,
    short_header,          ///< fewer than 12 bytes: nothing to reply to
    is_response,           ///< QR set: never answer a response (reflection loops)
    message_too_long,      ///< over 65535 bytes
    not_implemented,       ///< opcode other than QUERY
    bad_qdcount,           ///< qdcount is not exactly 1
    counts_exceed_message, ///< the counts need more bytes than the message has
    truncated,             ///< a name, question or record runs past the end
    label_too_long,        ///< length byte 64..191: over 63, or an obsolete label type (RFC 6891 §5)
    name_too_long,         ///< over 255 bytes in uncompressed wire form
    bad_pointer,           ///< compression pointer that is forward, to itself, into the header, or too many hops
    bad_opt,               ///< OPT outside the additional section, twice, not owned by the root, or bad options
    bad_edns_version,      ///< EDNS version other than 0: answer BADVERS (RFC 6891 §6.1.3)
};

/// What the server sends for a query_error.
enum class reply_action : uint8_t {
    answer,  ///< parsed: the caller decides the answer
    drop,    ///< UDP: send nothing; DoT: close the connection (framing is no longer trustworthy)
    formerr, ///< header-only FORMERR (build_header_response)
    notimp,  ///< header-only NOTIMP (build_header_response)
    badvers, ///< full response with rcode::badvers (build_response), the question was read
};

/// Maps a parse outcome to the reply. Any thread.
reply_action reply_for(query_error e) noexcept;

/// The EDNS(0) OPT record of a message (RFC 6891 §6.1).
struct edns {
    bool present = false;
    bool dnssec_ok = false; ///< the DO bit
    bool padding = false;   ///< an RFC 7830 Padding option (code 12) was present
    uint8_t version = 0;
    uint8_t extended_rcode = 0;    ///< upper 8 bits of the 12-bit rcode
    uint16_t udp_payload_size = 0; ///< as sent; see max_udp_response_size for the usable value
};

/// A parsed query. With error none or bad_edns_version every field is set; with another error only `hdr` is (and
/// not even that for short_header).
///
/// Policy, decided here once:
/// - exactly one question; any answer/authority records are walked (bounds-checked) and ignored;
/// - compression pointers must point strictly backwards, before the start of the name (or name part) that holds
///   them, and not into the header; so the question name, which starts at offset 12, never holds a pointer and
///   `question` is the exact wire copy that responses echo;
/// - bytes after the last record counted by the header are ignored and counted in `trailing_bytes`
///   (a DoT frame or a UDP datagram delimits the message; the extra bytes cannot change its meaning).
struct query {
    query_error error = query_error::none;
    header hdr;
    /// Lower-case (ASCII only, RFC 4343) dotted name without the trailing dot, "" for the root; points into the
    /// caller's name buffer.
    std::string_view qname;
    /// The question as received: qname (original case) + qtype + qclass; points into the message.
    std::span<const std::byte> question;
    uint16_t qtype = 0;
    uint16_t qclass = 0;
    /// Wire size of the qname (1 for the root, at most 255).
    uint8_t qname_wire_size = 0;
    /// False when a label holds a '.' byte: the dotted text then does not identify the name uniquely, and the caller
    /// must not match it against private zones (forward it or answer NXDOMAIN).
    bool qname_exact = true;
    edns opt;
    uint16_t trailing_bytes = 0;
};

enum class name_error : uint8_t {
    none = 0,
    truncated,
    label_too_long, ///< length byte 64..191
    name_too_long,  ///< over 255 bytes uncompressed
    bad_pointer,    ///< forward, to itself, into the header, or more than max_pointer_hops
};

struct decoded_name {
    name_error error = name_error::none;
    std::string_view text; ///< lower-case dotted, no trailing dot, "" for the root; points into the caller's buffer
    size_t end = 0;        ///< offset just after the name where it starts (after its first pointer, if any)
    uint8_t wire_size = 0; ///< uncompressed wire size, 1..255
    bool exact = true;     ///< no label holds a '.' byte (see query::qname_exact)
};

/// Decodes the possibly compressed name at `offset` of `msg` (the whole message: pointers are offsets into it).
/// A pointer must point before the start of the name part that holds it and past the header, so every chain ends.
/// Any thread.
decoded_name decode_name(std::span<const std::byte> msg, size_t offset,
                         std::span<char, name_buffer_size> name_buf) noexcept;

/// Parses a query message. `name_buf` receives the lower-cased dotted qname (`query::qname` points into it).
/// Any thread; the result points into `msg` and `name_buf`, which must outlive its use.
query parse_query(std::span<const std::byte> msg, std::span<char, name_buffer_size> name_buf) noexcept;

/// The largest UDP response a query allows: 512 without EDNS, else the requestor's size (at least 512) capped by
/// `our_max`. DoT and TCP use max_message_size instead.
uint16_t max_udp_response_size(const query& q, uint16_t our_max) noexcept;

/// SOA for the authority section of negative answers (RFC 2308 §3). Names are dotted, no trailing dot needed.
struct soa_record {
    std::string_view zone;  ///< owner: the zone apex, "" for the root
    std::string_view mname; ///< primary name server
    std::string_view rname; ///< mailbox as a name: "hostmaster.internal.corp"
    uint32_t serial = 1;
    uint32_t refresh = 3600;
    uint32_t retry = 600;
    uint32_t expire = 86400;
    uint32_t minimum = 300;
    /// The SOA's own TTL; the record is written with min(ttl, minimum), the negative-caching TTL of RFC 2308 §5.
    uint32_t ttl = 0xffffffff;
};

/// What to answer. Records are class IN, owned by the question name (written as a pointer to offset 12).
struct response_spec {
    rcode code = rcode::noerror;
    bool aa = true; ///< authoritative (private zones)
    bool ra = false;
    uint32_t ttl = 0; ///< of the A/AAAA records
    std::span<const std::array<uint8_t, 4>> a;
    std::span<const std::array<uint8_t, 16>> aaaa;
    const soa_record* soa = nullptr;  ///< written to the authority section when set
    uint16_t udp_payload_size = 1232; ///< ours, advertised in the OPT record (the DNS flag day 2020 value)
    /// RFC 7830 §6: padding only on encrypted transports. Pad only when this is set and the query carried Padding.
    bool allow_padding = true;
};

enum class build_error : uint8_t {
    none = 0,
    no_space, ///< not even header + question (+ OPT) fit in `out`
    bad_name, ///< a name in the spec is not a valid dotted name
    bad_spec, ///< rcode above 15 for a query without OPT, or a query that was not parsed
};

struct build_result {
    build_error error = build_error::none;
    uint16_t size = 0;      ///< bytes written to `out`
    bool truncated = false; ///< the records did not fit: TC is set, the sections are empty
    bool padded = false;
};

/// Builds the response to a parsed query (q.error none or bad_edns_version) into `out`, whose size is the limit
/// (pass out.first(max_udp_response_size(...)) for UDP). Copies id, opcode, RD, CD; sets QR, AA and RA as asked;
/// echoes the question exactly; adds the A, AAAA and SOA records; adds OPT when the query had one (our payload size,
/// DO echoed) and RFC 8467 block padding when the query asked for it. When the records do not fit, writes
/// header + question (+ OPT) with TC set. Any thread.
build_result build_response(const query& q, const response_spec& spec, std::span<std::byte> out) noexcept;

/// Header-only response (no question) for a message whose header was readable but whose question was not:
/// id, opcode, RD, CD copied, QR set, `code` (0..15) as rcode. Any thread.
build_result build_header_response(std::span<const std::byte> msg, rcode code, std::span<std::byte> out) noexcept;

/// Reads the header; empty when fewer than 12 bytes.
std::optional<header> read_header(std::span<const std::byte> msg) noexcept;

/// Rewrites the message id in place (upstream forwarding uses its own ids). False when fewer than 12 bytes.
bool set_message_id(std::span<std::byte> msg, uint16_t id) noexcept;

enum class upstream_error : uint8_t {
    none = 0,
    short_header,
    id_mismatch,
    not_response,
    bad_opcode,
    bad_qdcount,
    malformed,      ///< the question or a record is out of bounds or badly formed
    qname_mismatch, ///< compared case-insensitively
    qtype_mismatch,
    qclass_mismatch,
};

struct upstream_check {
    upstream_error error = upstream_error::none;
    uint16_t rcode = 0;     ///< 12-bit rcode (header bits, plus OPT's upper bits when present)
    bool truncated = false; ///< TC: retry over TCP, do not cache
};

/// Validates an upstream response against what we sent: `id` and `sent_question` (the query's `question` bytes:
/// uncompressed qname + qtype + qclass). Walks every record so that the cache helpers below only ever see
/// well-formed messages. Any thread.
upstream_check validate_response(std::span<const std::byte> resp, uint16_t id,
                                 std::span<const std::byte> sent_question) noexcept;

enum class ttl_status : uint8_t {
    cacheable = 0,
    uncacheable, ///< TC, an rcode other than NOERROR/NXDOMAIN, or a negative answer without SOA (RFC 2308 §5)
    malformed,
};

struct ttl_result {
    ttl_status status = ttl_status::malformed;
    uint32_t ttl = 0; ///< seconds, within [floor, cap], when cacheable
};

/// The cache lifetime of a response: the minimum TTL over answer + authority records; for NXDOMAIN and NODATA
/// (NOERROR, no answers) also min(SOA TTL, SOA MINIMUM) from the authority section (RFC 2308 §5), without which
/// the answer is uncacheable. TTLs above 2^31-1 count as 0 (RFC 2181 §8). Clamped to [floor, cap]. Any thread.
ttl_result response_cache_ttl(std::span<const std::byte> resp, uint32_t floor, uint32_t cap) noexcept;

/// Subtracts `elapsed` seconds (floor 0) from the TTL of every record in answer, authority and additional, except
/// OPT (its TTL field holds flags). False on a malformed message, which may then be partly rewritten: discard it.
/// Any thread.
bool decrement_ttls(std::span<std::byte> msg, uint32_t elapsed) noexcept;

/// RFC 8467 §4.1 for an answer that was not built here (forwarded, or from the cache): the well-formed response in
/// buf[0, len) gets one Padding option so that its size is a multiple of 468 (or, when `buf` is smaller, as close
/// as it fits). An existing OPT record must be the message's last record (as every resolver writes it): its Padding
/// options are replaced; without OPT one is appended (payload size `udp_payload_size`, version 0, no flags). Returns
/// the new length, or `len` unchanged when the message cannot be padded (malformed, OPT not last, no room). Any
/// thread.
size_t pad_response(std::span<std::byte> buf, size_t len, uint16_t udp_payload_size = 1232) noexcept;

} // namespace zt::dns
