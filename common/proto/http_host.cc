// HTTP/1.x Host sniffer: see http_host.hh. One forward pass over at most the limit; every read is checked against
// the bytes present, and every decision is taken on bytes already read, so a longer stream never changes it.
#include "common/proto/http_host.hh"

#include <array>
#include <cstring>

namespace zt::proto {
namespace {

constexpr uint8_t sp = ' ';
constexpr uint8_t htab = '\t';
constexpr uint8_t cr = '\r';
constexpr uint8_t lf = '\n';

enum char_class : uint8_t {
    c_token = 1,  // RFC 9110 §5.6.2 tchar
    c_target = 2, // a request-target byte: VCHAR or obs-text (lenient: servers accept raw UTF-8 in paths)
    c_value = 4,  // a field-value byte: VCHAR, obs-text, SP, HTAB (RFC 9110 §5.5)
    c_delim = 8,  // ends an absolute-form authority: '/', '?', '#'
};

constexpr std::array<uint8_t, 256> make_classes() {
    std::array<uint8_t, 256> t{};
    for (unsigned c = 0; c < 256; ++c) {
        const bool vchar = c >= 0x21 && c <= 0x7e;
        const bool obs_text = c >= 0x80;
        uint8_t k = 0;
        if (vchar || obs_text) {
            k |= c_target | c_value;
        }
        if (c == sp || c == htab) {
            k |= c_value;
        }
        const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        constexpr std::string_view token_punct = "!#$%&'*+-.^_`|~";
        if (alnum || token_punct.find(static_cast<char>(c)) != std::string_view::npos) {
            k |= c_token;
        }
        if (c == '/' || c == '?' || c == '#') {
            k |= c_delim;
        }
        t[c] = k;
    }
    return t;
}

constexpr std::array<uint8_t, 256> g_classes = make_classes();

bool is(uint8_t c, char_class k) noexcept {
    return (g_classes[c] & k) != 0;
}

char lower(uint8_t c) noexcept {
    return static_cast<char>(static_cast<unsigned>(c - 'A') < 26u ? (c | 0x20) : c);
}

struct authority {
    bool ok = false;
    host_name host;
    uint16_t port = 0;
};

// uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2-3): a reg-name or IPv4 checked by normalize_host, or
// "[" IPv6 "]"; no userinfo, no IPvFuture, no zone id, no percent-encoding.
authority parse_authority(std::string_view s, bool require_port, std::span<char, name_buffer_size> name_buf) noexcept {
    std::string_view host_text;
    std::string_view port_text;
    if (!s.empty() && s[0] == '[') {
        const size_t close = s.find(']');
        if (close == std::string_view::npos) {
            return {};
        }
        host_text = s.substr(1, close - 1);
        const std::string_view rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':') {
                return {};
            }
            port_text = rest.substr(1);
        }
        // normalize_host would take "a." for "a": a bracketed literal has no trailing dot.
        if (host_text.empty() || host_text.back() == '.') {
            return {};
        }
    } else {
        const size_t colon = s.find(':');
        host_text = s.substr(0, colon);
        if (colon != std::string_view::npos) {
            port_text = s.substr(colon + 1);
        }
    }
    if (require_port && port_text.empty()) {
        return {};
    }
    if (port_text.size() > 5) {
        return {};
    }
    uint32_t port = 0;
    for (const char c : port_text) {
        if (c < '0' || c > '9') {
            return {};
        }
        port = port * 10 + static_cast<uint32_t>(c - '0');
    }
    if (port > 65535) {
        return {};
    }
    const host_name h = normalize_host(host_text, name_buf);
    const bool bracketed = !s.empty() && s[0] == '[';
    if (h.kind == host_kind::none || (h.kind == host_kind::ipv6) != bracketed) {
        return {};
    }
    return {true, h, static_cast<uint16_t>(port)};
}

// Field values are most of a request's bytes: skip 8 at a time while none is a CTL (HTAB, CR and LF included) or
// DEL; the byte loop after it handles the word that has one. SWAR tests, exact for "any byte": bytes below 0x20
// and bytes equal to 0x7f (Bit Twiddling Hacks, "hasless" and "haszero").
size_t skip_plain_value_words(const uint8_t* p, size_t pos, size_t n) noexcept {
    constexpr uint64_t ones = 0x0101010101010101ull;
    constexpr uint64_t highs = 0x8080808080808080ull;
    while (n - pos >= 8) {
        uint64_t x = 0;
        std::memcpy(&x, p + pos, 8);
        const uint64_t below_space = (x - ones * 0x20) & ~x & highs;
        const uint64_t del = x ^ (ones * 0x7f);
        const uint64_t has_del = (del - ones) & ~del & highs;
        if ((below_space | has_del) != 0) {
            break;
        }
        pos += 8;
    }
    return pos;
}

bool iequals(std::string_view a, std::string_view lower_b) noexcept {
    if (a.size() != lower_b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); ++i) {
        if (lower(static_cast<uint8_t>(a[i])) != lower_b[i]) {
            return false;
        }
    }
    return true;
}

} // namespace

http_result sniff_http_host(std::span<const std::byte> bytes, std::span<char, name_buffer_size> name_buf,
                            const http_limits& limits) noexcept {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    const auto* text = reinterpret_cast<const char*>(bytes.data());
    // Running out of bytes at the limit means the block is too long; before it, that more are needed.
    const bool capped = bytes.size() >= limits.max_header_bytes;
    const size_t n = capped ? limits.max_header_bytes : bytes.size();

    http_result r;
    const auto out_of_bytes = [&]() noexcept {
        r.status = capped ? http_status::too_long : http_status::need_more;
        return r;
    };
    const auto fail = [&](http_status s, http_error e) noexcept {
        r.status = s;
        r.error = e;
        return r;
    };

    size_t pos = 0;
    // RFC 9112 §2.2: ignore at least one empty line before the request line.
    for (int skipped = 0; skipped < 2; ++skipped) {
        if (pos < n && p[pos] == lf) {
            ++pos;
        } else if (pos < n && p[pos] == cr) {
            if (pos + 1 == n) {
                return out_of_bytes();
            }
            if (p[pos + 1] != lf) {
                return fail(http_status::not_http, http_error::bad_method);
            }
            pos += 2;
        } else {
            break;
        }
    }

    // method SP
    const size_t method_start = pos;
    while (pos < n && is(p[pos], c_token)) {
        if (pos - method_start == max_method_size) {
            return fail(http_status::not_http, http_error::bad_method);
        }
        ++pos;
    }
    if (pos == n) {
        return out_of_bytes();
    }
    if (pos == method_start || p[pos] != sp) {
        return fail(http_status::not_http, http_error::bad_method);
    }
    r.method = std::string_view(text + method_start, pos - method_start);
    ++pos;

    // request-target SP
    if (pos == n) {
        return out_of_bytes();
    }
    size_t authority_start = 0;
    size_t authority_size = 0;
    if (r.method == "CONNECT") {
        r.form = request_form::authority;
        authority_start = pos;
        while (pos < n && is(p[pos], c_target)) {
            ++pos;
        }
        authority_size = pos - authority_start;
    } else if (p[pos] == '/') {
        r.form = request_form::origin;
        while (pos < n && is(p[pos], c_target)) {
            ++pos;
        }
    } else if (p[pos] == '*') {
        r.form = request_form::asterisk;
        ++pos;
    } else {
        // absolute-form: only http and https name a host we can route by.
        r.form = request_form::absolute;
        constexpr std::string_view http = "http";
        for (const char want : http) {
            if (pos == n) {
                return out_of_bytes();
            }
            if (lower(p[pos]) != want) {
                return fail(http_status::not_http, http_error::bad_target);
            }
            ++pos;
        }
        if (pos == n) {
            return out_of_bytes();
        }
        if (lower(p[pos]) == 's') {
            ++pos;
        }
        for (const char want : std::string_view("://")) {
            if (pos == n) {
                return out_of_bytes();
            }
            if (p[pos] != static_cast<uint8_t>(want)) {
                return fail(http_status::not_http, http_error::bad_target);
            }
            ++pos;
        }
        authority_start = pos;
        while (pos < n && is(p[pos], c_target) && !is(p[pos], c_delim)) {
            ++pos;
        }
        authority_size = pos - authority_start;
        while (pos < n && is(p[pos], c_target)) {
            ++pos;
        }
    }
    if (pos == n) {
        return out_of_bytes();
    }
    if (p[pos] != sp || (r.form == request_form::authority && authority_size == 0)) {
        return fail(http_status::not_http, http_error::bad_target);
    }
    ++pos;

    // HTTP-version line end
    constexpr std::string_view version = "HTTP/1.";
    for (const char want : version) {
        if (pos == n) {
            return out_of_bytes();
        }
        if (p[pos] != static_cast<uint8_t>(want)) {
            return fail(http_status::not_http, r.method == "PRI" && r.form == request_form::asterisk
                                                   ? http_error::http2_preface
                                                   : http_error::bad_version);
        }
        ++pos;
    }
    if (pos == n) {
        return out_of_bytes();
    }
    if (p[pos] < '0' || p[pos] > '9') {
        return fail(http_status::not_http, http_error::bad_version);
    }
    r.version_minor = static_cast<uint8_t>(p[pos] - '0');
    ++pos;
    if (pos == n) {
        return out_of_bytes();
    }
    if (p[pos] == cr) {
        if (pos + 1 == n) {
            return out_of_bytes();
        }
        if (p[pos + 1] != lf) {
            return fail(http_status::malformed, http_error::bad_line_end);
        }
        pos += 2;
    } else if (p[pos] == lf) {
        ++pos;
    } else {
        return fail(http_status::malformed, http_error::bad_line_end);
    }
    if (r.form == request_form::asterisk && r.method != "OPTIONS") {
        return fail(http_status::malformed, http_error::asterisk_not_options);
    }

    // field lines, up to the empty line
    size_t host_start = 0;
    size_t host_size = 0;
    bool host_seen = false;
    for (;;) {
        if (pos == n) {
            return out_of_bytes();
        }
        if (p[pos] == cr) {
            if (pos + 1 == n) {
                return out_of_bytes();
            }
            if (p[pos + 1] != lf) {
                return fail(http_status::malformed, http_error::bad_line_end);
            }
            pos += 2;
            break;
        }
        if (p[pos] == lf) {
            ++pos;
            break;
        }
        if (p[pos] == sp || p[pos] == htab) {
            return fail(http_status::malformed, http_error::obs_fold);
        }
        const size_t name_start = pos;
        while (pos < n && is(p[pos], c_token)) {
            ++pos;
        }
        if (pos == n) {
            return out_of_bytes();
        }
        // RFC 9112 §5.1: no whitespace between the name and the colon.
        if (pos == name_start || p[pos] != ':') {
            return fail(http_status::malformed, http_error::bad_field_line);
        }
        const std::string_view name(text + name_start, pos - name_start);
        ++pos;
        while (pos < n && (p[pos] == sp || p[pos] == htab)) {
            ++pos;
        }
        const size_t value_start = pos;
        pos = skip_plain_value_words(p, pos, n);
        while (pos < n && is(p[pos], c_value)) {
            ++pos;
        }
        if (pos == n) {
            return out_of_bytes();
        }
        size_t value_end = pos;
        while (value_end > value_start && (p[value_end - 1] == sp || p[value_end - 1] == htab)) {
            --value_end;
        }
        if (p[pos] == cr) {
            if (pos + 1 == n) {
                return out_of_bytes();
            }
            if (p[pos + 1] != lf) {
                return fail(http_status::malformed, http_error::bad_line_end);
            }
            pos += 2;
        } else if (p[pos] == lf) {
            ++pos;
        } else {
            return fail(http_status::malformed, http_error::bad_field_line); // NUL or another CTL
        }
        if (name.size() == 4 && iequals(name, "host")) {
            if (host_seen) {
                return fail(http_status::malformed, http_error::duplicate_host);
            }
            host_seen = true;
            host_start = value_start;
            host_size = value_end - value_start;
        }
    }
    r.header_end = pos;

    if (!host_seen && r.version_minor >= 1) {
        return fail(http_status::malformed, http_error::missing_host);
    }
    authority a;
    if (host_seen) {
        a = parse_authority(std::string_view(text + host_start, host_size), false, name_buf);
        if (!a.ok) {
            return fail(http_status::malformed, http_error::bad_host);
        }
    }
    if (r.form == request_form::absolute || r.form == request_form::authority) {
        // RFC 9112 §3.2.2: the target's authority wins over Host.
        a = parse_authority(std::string_view(text + authority_start, authority_size), r.form == request_form::authority,
                            name_buf);
        if (!a.ok) {
            return fail(http_status::malformed, http_error::bad_target_authority);
        }
    }
    if (!a.ok) {
        r.status = http_status::no_host;
        return r;
    }
    r.status = http_status::found;
    r.host = a.host;
    r.port = a.port;
    return r;
}

std::string_view to_string(http_status v) noexcept {
    switch (v) {
    case http_status::need_more:
        return "need_more";
    case http_status::not_http:
        return "not_http";
    case http_status::found:
        return "found";
    case http_status::no_host:
        return "no_host";
    case http_status::malformed:
        return "malformed";
    case http_status::too_long:
        return "too_long";
    }
    return "unknown";
}

std::string_view to_string(http_error v) noexcept {
    switch (v) {
    case http_error::none:
        return "none";
    case http_error::bad_method:
        return "bad_method";
    case http_error::bad_target:
        return "bad_target";
    case http_error::bad_version:
        return "bad_version";
    case http_error::http2_preface:
        return "http2_preface";
    case http_error::bad_line_end:
        return "bad_line_end";
    case http_error::bad_field_line:
        return "bad_field_line";
    case http_error::obs_fold:
        return "obs_fold";
    case http_error::duplicate_host:
        return "duplicate_host";
    case http_error::missing_host:
        return "missing_host";
    case http_error::bad_host:
        return "bad_host";
    case http_error::bad_target_authority:
        return "bad_target_authority";
    case http_error::asterisk_not_options:
        return "asterisk_not_options";
    }
    return "unknown";
}

std::string_view to_string(request_form v) noexcept {
    switch (v) {
    case request_form::origin:
        return "origin";
    case request_form::absolute:
        return "absolute";
    case request_form::authority:
        return "authority";
    case request_form::asterisk:
        return "asterisk";
    }
    return "unknown";
}

} // namespace zt::proto
