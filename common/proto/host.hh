// Host name normalisation shared by the proxy's sniffers (HTTP Host, TLS SNI): lower-case, one trailing dot off,
// then classify as a DNS name (the same rules as zones.json names) or an IPv4/IPv6 literal. Pure, non-allocating,
// noexcept: any shard thread may call it on untrusted bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace zt::proto {

/// Names are at most 253 text bytes, IPv6 literals at most 45; the size of the buffer callers pass.
inline constexpr size_t name_buffer_size = 256;
/// RFC 1035 §2.3.4 limits, in text form without the trailing dot.
inline constexpr size_t max_name_size = 253;
inline constexpr size_t max_label_size = 63;

enum class host_kind : uint8_t {
    none = 0, ///< not a valid host: the text is empty, too long, or has a byte a name or literal cannot have
    dns_name, ///< labels of 1-63 of [a-z0-9_-], at most 253 bytes: what zones.json accepts (common/config)
    ipv4,     ///< dotted quad, four decimal parts 0-255 without leading zeros
    ipv6,     ///< RFC 4291 text form (no brackets, no zone id), lower-cased but not compressed or expanded
};

struct host_name {
    host_kind kind = host_kind::none;
    std::string_view text; ///< lower-case, no trailing dot; points into the caller's name buffer; empty for none
};

/// Lower-cases `text` into `name_buf`, drops one trailing dot, and classifies the result. A name whose last label is
/// all digits must be a valid IPv4 literal (WHATWG URL rule): "10.1.2.010" or "foo.123" are `none`, never names.
/// `text` may alias the start of `name_buf` (the copy is done in place then). Any thread.
host_name normalize_host(std::string_view text, std::span<char, name_buffer_size> name_buf) noexcept;

/// True for RFC 4291 §2.2 text (hex groups, one "::" at most, an optional dotted-quad tail); no brackets, no zone.
bool is_ipv6_literal(std::string_view text) noexcept;

/// True for a strict dotted quad: four parts of 1-3 digits, each 0-255, no leading zeros.
bool is_ipv4_literal(std::string_view text) noexcept;

/// A short stable name for logs and counters ("dns_name"). Any thread.
std::string_view to_string(host_kind v) noexcept;

} // namespace zt::proto
