// TLS ClientHello sniffer for the TLS proxy: reads the SNI host name (and ALPN, offered versions, ECH presence) from
// the first bytes of a TLS connection, before any TLS library sees them: on the plaintext of a tunnel whose client
// speaks TLS end to end to the service (the outer handshake's SNI comes from wolfSSL's own parse). Pure,
// bounds-checked, non-allocating
// and noexcept: any shard thread may call it on untrusted bytes.
#pragma once

#include "common/proto/host.hh"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace zt::proto {

inline constexpr size_t tls_record_header_size = 5;
inline constexpr size_t tls_handshake_header_size = 4;
/// RFC 8446 §5.1: a plaintext record carries at most 2^14 bytes.
inline constexpr size_t tls_max_plaintext_record = 16384;
/// A ClientHello larger than this is refused; today's largest (post-quantum key shares) are about 2 KB.
inline constexpr size_t default_max_client_hello_size = 16384;
/// Clients fragment a hello only when it exceeds one record; more records than this is a hostile stream.
inline constexpr size_t default_max_hello_records = 16;

namespace tls_ext {
inline constexpr uint16_t server_name = 0;
inline constexpr uint16_t alpn = 16;
inline constexpr uint16_t supported_versions = 43;
inline constexpr uint16_t encrypted_client_hello = 0xfe0d;
} // namespace tls_ext

enum class tls_status : uint8_t {
    need_more, ///< the ClientHello is not complete yet, nothing wrong so far: read more and call again
    not_tls,   ///< the first bytes are not a TLS handshake record (content type 22, version 3.x): decided on byte 0-2
    found,     ///< a complete, valid ClientHello with a server_name host_name: `sni`
    no_sni,    ///< a complete, valid ClientHello without server_name (or without a host_name entry in it)
    malformed, ///< TLS records, but not a valid ClientHello (`error` says why)
    too_long,  ///< the hello or its number of records is over the limits
};

enum class tls_error : uint8_t {
    none = 0,
    bad_record,          ///< record version not 3.x, length 0 or over 2^14, or another content type mid-hello
    not_client_hello,    ///< the first handshake message is not a ClientHello (type 1)
    bad_hello,           ///< fixed fields out of bounds (session id over 32, odd or empty cipher suites, ...)
    bad_extensions,      ///< extension lengths do not add up to the end of the hello
    duplicate_extension, ///< server_name, ALPN, supported_versions or ECH twice (RFC 8446 §4.2)
    bad_sni,             ///< server_name list malformed, two host_names, or a host_name that is not a valid host
    bad_alpn,            ///< ALPN list malformed: empty list or empty protocol name (RFC 7301 §3.1)
    bad_supported_versions,
    hello_too_long,   ///< too_long: the handshake length is over the limit
    too_many_records, ///< too_long: the hello is spread over more records than the limit
};

struct client_hello_limits {
    size_t max_hello_size = default_max_client_hello_size; ///< handshake body bytes (without its 4-byte header)
    size_t max_records = default_max_hello_records;
};

struct client_hello_result {
    tls_status status = tls_status::need_more;
    tls_error error = tls_error::none;
    /// When found: the SNI host_name, lower-case, without a trailing dot; points into the caller's name buffer. Its
    /// kind is dns_name, or ipv4/ipv6 for a client that (against RFC 6066 §3) sent a literal address.
    host_name sni;
    /// Once the hello is complete (found, no_sni): offset just past its last byte (record headers included).
    size_t hello_end = 0;
    /// With need_more: no found/no_sni is possible before the stream holds this many bytes (the end of the current
    /// record, or of the hello if it ends first). Waiting for them before the next call spares re-parsing a hello
    /// that trickles in (what wolfSSL does with records anyway); an error may show earlier, so calling on every
    /// read is also correct.
    size_t needed = 0;
    uint16_t legacy_version = 0; ///< ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 hellos)
    bool offers_tls13 = false;   ///< supported_versions lists 0x0304
    /// An encrypted_client_hello extension is present: `sni` is then the outer (public) name, not the real one.
    bool ech = false;
    bool has_alpn = false;
    /// The ALPN ProtocolNameList body (1-byte length + name, repeated), validated; points into the input. Empty when
    /// there is no ALPN, or when a record header splits the extension or precedes its first byte (has_alpn tells
    /// them apart). Iterate it with next_alpn_protocol.
    std::span<const std::byte> alpn;
};

/// Sniffs the start of a byte stream for a TLS ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) and its SNI
/// (RFC 6066 §3). The whole stream so far is passed on every call (stateless); a prefix of an input that gives
/// `found` gives `need_more` or that same `found`. The hello may be fragmented over several handshake records;
/// TLS 1.0-1.3 hellos, GREASE values and extensions in any order are accepted; a hello without extensions is
/// no_sni. Bytes after the hello are not looked at. Any thread; the result points into `bytes` and `name_buf`,
/// which must outlive its use.
client_hello_result sniff_client_hello(std::span<const std::byte> bytes, std::span<char, name_buffer_size> name_buf,
                                       const client_hello_limits& limits = {}) noexcept;

struct alpn_entry {
    std::string_view protocol; ///< empty at the end of the list
    size_t next = 0;           ///< offset of the entry after this one
};

/// Iterates a validated ALPN ProtocolNameList (client_hello_result::alpn): the protocol at `offset` (start at 0,
/// then pass `next`). Any thread.
alpn_entry next_alpn_protocol(std::span<const std::byte> alpn, size_t offset) noexcept;

/// A short stable name for logs and counters ("no_sni"). Any thread.
std::string_view to_string(tls_status v) noexcept;
/// A short stable name for logs and counters ("bad_sni"). Any thread.
std::string_view to_string(tls_error v) noexcept;

} // namespace zt::proto
