// HTTP/1.x request sniffer for the TLS proxy: finds the destination host of the first request in a tunnel's
// plaintext (RFC 9112 request line + Host header), or decides after a few bytes that the stream is not HTTP/1.x.
// Pure, bounds-checked, non-allocating and noexcept: any shard thread may call it on untrusted bytes.
#pragma once

#include "common/proto/host.hh"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace zt::proto {

/// The default header-block limit (request line + header fields + the empty line), as most servers use.
inline constexpr size_t default_max_header_bytes = 8192;
/// No registered method is longer than 17 bytes ("UPDATEREDIRECTREF"); a longer first token is not HTTP.
inline constexpr size_t max_method_size = 20;

enum class http_status : uint8_t {
    need_more, ///< no complete header block yet, under the limit, nothing wrong so far: read more and call again
    not_http,  ///< the first bytes cannot start an HTTP/1.x request (decided at the first impossible byte)
    found,     ///< a complete, valid header block naming a host: `host`
    no_host,   ///< a complete, valid HTTP/1.0 request in origin- or asterisk-form without Host: no name
    malformed, ///< an HTTP/1.x request line, but the request is invalid (`error` says why)
    too_long,  ///< no end of the header block within the limit
};

enum class http_error : uint8_t {
    none = 0,
    // not_http
    bad_method,    ///< the first token is empty, too long, has a non-token byte, or is not followed by one SP
    bad_target,    ///< request-target not origin-form, "*", http(s) absolute-form, or CONNECT's authority
    bad_version,   ///< not "HTTP/1.<digit>" after the target
    http2_preface, ///< "PRI * HTTP/2.0": HTTP/2 with prior knowledge (h2c), no Host header to read
    // malformed
    bad_line_end,         ///< a CR not followed by LF, or bytes after the version on the request line
    bad_field_line,       ///< a field line without a token name directly followed by ':', or a CTL in a value
    obs_fold,             ///< a line starting with SP/HTAB (obsolete line folding, or whitespace after the start line)
    duplicate_host,       ///< two Host field lines (RFC 9112 §3.2: 400)
    missing_host,         ///< HTTP/1.1 without Host (RFC 9112 §3.2: 400)
    bad_host,             ///< a Host value that is not uri-host [":" port] with a valid name or IP literal
    bad_target_authority, ///< absolute-form or CONNECT authority that is not a valid host (and port)
    asterisk_not_options, ///< "*" as target of a method other than OPTIONS
};

enum class request_form : uint8_t {
    origin,    ///< "/path": the host comes from Host
    absolute,  ///< "http://host/path": the host comes from the target, Host is validated and ignored (RFC 9112 §3.2.2)
    authority, ///< CONNECT "host:port": the host comes from the target
    asterisk,  ///< OPTIONS "*": the host comes from Host
};

struct http_limits {
    size_t max_header_bytes = default_max_header_bytes;
};

struct http_result {
    http_status status = http_status::need_more;
    http_error error = http_error::none;
    request_form form = request_form::origin;
    /// When found: lower-case, port and brackets and one trailing dot removed; points into the caller's name buffer.
    host_name host;
    uint16_t port = 0;         ///< when found: the port given with the host, 0 when none (or empty, "host:")
    uint8_t version_minor = 0; ///< HTTP/1.<minor>, once the request line is complete
    /// Offset just past the empty line that ends the header block, once it is complete (found, no_host, and
    /// malformed for reasons only the whole block shows); 0 otherwise. Informative: the proxy forwards all bytes.
    size_t header_end = 0;
    std::string_view method; ///< points into the input, once the method is complete
};

/// Sniffs the start of a byte stream for an HTTP/1.x request (RFC 9112) and its destination host. The whole stream
/// so far is passed on every call (stateless); a prefix of an input that gives `found` gives `need_more` or that same
/// `found`. Policy:
/// - the method is a token of at most max_method_size bytes followed by one SP; up to two empty lines before the
///   request line are skipped (RFC 9112 §2.2); lines end in CRLF or a bare LF, a bare CR is an error;
/// - the target is origin-form, "*" (OPTIONS only), absolute-form with scheme http or https (case-insensitive,
///   no userinfo), or authority-form for CONNECT (port required); anything else is not_http;
/// - absolute- and authority-form name the host; Host must still be valid if present; HTTP/1.1 needs exactly one
///   Host, HTTP/1.0 at most one; an empty Host value is bad_host;
/// - hosts: `normalize_host` rules (DNS name as in zones.json, IPv4, bracketed IPv6 without zone id), port digits
///   up to 65535; no percent-encoding.
/// Any thread; the result points into `bytes` and `name_buf`, which must outlive its use.
http_result sniff_http_host(std::span<const std::byte> bytes, std::span<char, name_buffer_size> name_buf,
                            const http_limits& limits = {}) noexcept;

/// A short stable name for logs and counters ("malformed"). Any thread.
std::string_view to_string(http_status v) noexcept;
/// A short stable name for logs and counters ("duplicate_host"). Any thread.
std::string_view to_string(http_error v) noexcept;
/// A short stable name for logs and counters ("absolute"). Any thread.
std::string_view to_string(request_form v) noexcept;

} // namespace zt::proto
