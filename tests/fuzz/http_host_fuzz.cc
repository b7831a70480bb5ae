// Fuzzes the HTTP/1.x Host sniffer: the input as the first bytes of a tunnel, and as the field lines after a fixed
// request line. Checks the result's invariants, that any prefix answers need_more or the same answer (found only
// with the whole header block), that a smaller limit never changes a found that fits in it, and that the found
// host is a fixed point of normalize_host.
#include "common/proto/http_host.hh"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace proto = zt::proto;

namespace {

// Invariants, not input checks: a failure here is a sniffer bug, so stop the fuzzer on it.
void expect(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

bool same(const proto::http_result& a, const proto::http_result& b) {
    return a.status == b.status && a.error == b.error && a.form == b.form && a.host.kind == b.host.kind &&
           a.host.text == b.host.text && a.port == b.port && a.version_minor == b.version_minor &&
           a.header_end == b.header_end;
}

void check_result(std::span<const std::byte> in, const proto::http_result& r, const std::array<char, 256>& name,
                  size_t limit) {
    switch (r.status) {
    case proto::http_status::found: {
        expect(r.error == proto::http_error::none);
        expect(r.host.kind != proto::host_kind::none);
        expect(!r.host.text.empty() && r.host.text.size() <= proto::max_name_size);
        expect(r.host.text.data() == name.data());
        expect(r.host.text.back() != '.');
        for (const char c : r.host.text) {
            expect(c < 'A' || c > 'Z');
        }
        std::array<char, proto::name_buffer_size> again{};
        const proto::host_name h = proto::normalize_host(r.host.text, again);
        expect(h.kind == r.host.kind && h.text == r.host.text);
        [[fallthrough]];
    }
    case proto::http_status::no_host:
        expect(r.header_end > 0 && r.header_end <= in.size() && r.header_end <= limit);
        break;
    case proto::http_status::need_more:
        expect(in.size() < limit && r.error == proto::http_error::none);
        break;
    case proto::http_status::too_long:
        expect(in.size() >= limit && r.error == proto::http_error::none);
        break;
    case proto::http_status::not_http:
    case proto::http_status::malformed:
        expect(r.error != proto::http_error::none);
        break;
    }
    if (r.status != proto::http_status::found) {
        expect(r.host.kind == proto::host_kind::none && r.host.text.empty());
    }
}

void sniff_all_ways(std::span<const std::byte> in) {
    std::array<char, proto::name_buffer_size> name{};
    const proto::http_result full = proto::sniff_http_host(in, name);
    check_result(in, full, name, proto::default_max_header_bytes);

    // Prefixes: all of them for short inputs, a spread of them (and both sides of header_end) for long ones.
    std::array<char, proto::name_buffer_size> name2{};
    const auto check_prefix = [&](size_t k) {
        const proto::http_result p = proto::sniff_http_host(in.first(k), name2);
        check_result(in.first(k), p, name2, proto::default_max_header_bytes);
        if (p.status != proto::http_status::need_more) {
            expect(same(p, full));
        }
        if (full.status == proto::http_status::found || full.status == proto::http_status::no_host) {
            expect((p.status == proto::http_status::need_more) == (k < full.header_end));
        }
    };
    if (in.size() <= 300) {
        for (size_t k = 0; k < in.size(); ++k) {
            check_prefix(k);
        }
    } else {
        for (size_t k = 0; k < in.size(); k += 1 + in.size() / 64) {
            check_prefix(k);
        }
        if (full.header_end > 0) {
            check_prefix(full.header_end - 1);
            check_prefix(full.header_end);
        }
    }

    // A smaller limit: a found that fits is unchanged; a found under it was found without it.
    const size_t small = in.empty() ? 0 : std::to_integer<size_t>(in[0]) * 4;
    std::array<char, proto::name_buffer_size> name3{};
    const proto::http_result limited = proto::sniff_http_host(in, name3, {small});
    check_result(in, limited, name3, small);
    if (full.status == proto::http_status::found && full.header_end <= small) {
        expect(same(limited, full));
    }
    if (limited.status == proto::http_status::found) {
        expect(same(limited, full));
    }
}

std::array<std::byte, 2 * proto::default_max_header_bytes> g_buf;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto in = std::as_bytes(std::span(data, size));
    sniff_all_ways(in);

    // The input as field lines, so the fuzzer reaches header parsing without having to find a request line first.
    constexpr std::string_view line = "GET / HTTP/1.1\r\n";
    if (size + line.size() <= g_buf.size()) {
        std::memcpy(g_buf.data(), line.data(), line.size());
        if (size > 0) {
            std::memcpy(g_buf.data() + line.size(), data, size);
        }
        sniff_all_ways(std::span(g_buf).first(line.size() + size));
    }
    return 0;
}
