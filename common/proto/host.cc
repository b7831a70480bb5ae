// Host name normalisation: see host.hh.
#include "common/proto/host.hh"

namespace zt::proto {
namespace {

bool is_digit(char c) noexcept {
    return static_cast<unsigned char>(c - '0') < 10u;
}

bool is_hex(char c) noexcept {
    return is_digit(c) || static_cast<unsigned char>((c | 0x20) - 'a') < 6u;
}

char fold(char c) noexcept {
    return static_cast<unsigned char>(c - 'A') < 26u ? static_cast<char>(c | 0x20) : c;
}

// The characters common/config's normalize_dns_name accepts in a label (after lower-casing).
bool is_name_char(char c) noexcept {
    return static_cast<unsigned char>(c - 'a') < 26u || is_digit(c) || c == '-' || c == '_';
}

} // namespace

bool is_ipv4_literal(std::string_view s) noexcept {
    size_t parts = 0;
    size_t i = 0;
    for (;;) {
        const size_t start = i;
        unsigned value = 0;
        while (i < s.size() && is_digit(s[i]) && i - start < 3) {
            value = value * 10 + static_cast<unsigned>(s[i] - '0');
            ++i;
        }
        const size_t len = i - start;
        if (len == 0 || value > 255 || (len > 1 && s[start] == '0')) {
            return false;
        }
        ++parts;
        if (i == s.size()) {
            return parts == 4;
        }
        if (s[i] != '.' || parts == 4) {
            return false;
        }
        ++i;
    }
}

bool is_ipv6_literal(std::string_view s) noexcept {
    // Longest form: six groups and a dotted quad, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".
    if (s.size() < 2 || s.size() > 45) {
        return false;
    }
    size_t groups = 0;
    bool compressed = false;
    size_t i = 0;
    if (s[0] == ':') {
        if (s[1] != ':') {
            return false;
        }
        compressed = true;
        i = 2;
        if (i == s.size()) {
            return true; // "::"
        }
    }
    for (;;) {
        size_t j = i;
        while (j < s.size() && is_hex(s[j])) {
            ++j;
        }
        if (j < s.size() && s[j] == '.') {
            // A dotted-quad tail stands for the last two groups.
            if (!is_ipv4_literal(s.substr(i))) {
                return false;
            }
            groups += 2;
            break;
        }
        if (j == i || j - i > 4) {
            return false;
        }
        ++groups;
        if (j == s.size()) {
            break;
        }
        if (s[j] != ':' || groups > 8) {
            return false;
        }
        if (j + 1 < s.size() && s[j + 1] == ':') {
            if (compressed) {
                return false;
            }
            compressed = true;
            i = j + 2;
            if (i == s.size()) {
                break;
            }
            continue;
        }
        i = j + 1;
        if (i == s.size()) {
            return false; // a single trailing colon
        }
    }
    return compressed ? groups <= 7 : groups == 8;
}

host_name normalize_host(std::string_view text, std::span<char, name_buffer_size> name_buf) noexcept {
    if (!text.empty() && text.back() == '.') {
        text.remove_suffix(1);
    }
    if (text.empty() || text.size() > max_name_size) {
        return {};
    }
    // Copy folded; in place when text aliases name_buf (each byte is read before the same index is written).
    bool name_chars = true;
    bool colon = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = fold(text[i]);
        name_buf[i] = c;
        if (c == ':') {
            colon = true;
        } else if (c != '.' && !is_name_char(c)) {
            name_chars = false;
        }
    }
    const std::string_view out(name_buf.data(), text.size());
    if (colon) {
        return is_ipv6_literal(out) ? host_name{host_kind::ipv6, out} : host_name{};
    }
    if (!name_chars) {
        return {};
    }
    size_t label = 0;
    bool label_digits_only = true;
    for (const char c : out) {
        if (c == '.') {
            if (label == 0) {
                return {};
            }
            label = 0;
            label_digits_only = true;
            continue;
        }
        if (++label > max_label_size) {
            return {};
        }
        label_digits_only = label_digits_only && is_digit(c);
    }
    if (label == 0) {
        return {}; // "a..": the one trailing dot is gone, a second one leaves an empty label
    }
    if (label_digits_only) {
        return is_ipv4_literal(out) ? host_name{host_kind::ipv4, out} : host_name{};
    }
    return {host_kind::dns_name, out};
}

std::string_view to_string(host_kind v) noexcept {
    switch (v) {
    case host_kind::none:
        return "none";
    case host_kind::dns_name:
        return "dns_name";
    case host_kind::ipv4:
        return "ipv4";
    case host_kind::ipv6:
        return "ipv6";
    }
    return "unknown";
}

} // namespace zt::proto
