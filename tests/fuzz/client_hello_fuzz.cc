// Fuzzes the TLS ClientHello sniffer: the input as the first bytes of a connection, and as a ClientHello body put
// into one handshake record. Checks the result's invariants, that any prefix answers need_more or the same answer
// (found only with the whole hello), and that the same hello re-fragmented into records of another size gives the
// same answer (the in-place reading across record boundaries against a simple reassembly).
#include "common/proto/client_hello.hh"

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

bool same(const proto::client_hello_result& a, const proto::client_hello_result& b) {
    return a.status == b.status && a.error == b.error && a.sni.kind == b.sni.kind && a.sni.text == b.sni.text &&
           a.hello_end == b.hello_end && a.offers_tls13 == b.offers_tls13 && a.ech == b.ech &&
           a.has_alpn == b.has_alpn && a.alpn.data() == b.alpn.data() && a.alpn.size() == b.alpn.size();
}

bool complete(const proto::client_hello_result& r) {
    return r.status == proto::tls_status::found || r.status == proto::tls_status::no_sni;
}

void check_result(std::span<const std::byte> in, const proto::client_hello_result& r,
                  const std::array<char, proto::name_buffer_size>& name) {
    if (r.status == proto::tls_status::found) {
        expect(r.sni.kind != proto::host_kind::none);
        expect(!r.sni.text.empty() && r.sni.text.size() <= proto::max_name_size);
        expect(r.sni.text.data() == name.data());
        for (const char c : r.sni.text) {
            expect(c < 'A' || c > 'Z');
        }
        std::array<char, proto::name_buffer_size> again{};
        const proto::host_name h = proto::normalize_host(r.sni.text, again);
        expect(h.kind == r.sni.kind && h.text == r.sni.text);
    } else {
        expect(r.sni.kind == proto::host_kind::none && r.sni.text.empty());
    }
    if (complete(r)) {
        expect(r.error == proto::tls_error::none);
        expect(r.hello_end > proto::tls_record_header_size + proto::tls_handshake_header_size);
        expect(r.hello_end <= in.size());
        if (!r.alpn.empty()) {
            expect(r.has_alpn);
            expect(r.alpn.data() >= in.data() && r.alpn.data() + r.alpn.size() <= in.data() + r.hello_end);
            size_t total = 0;
            for (proto::alpn_entry e = proto::next_alpn_protocol(r.alpn, 0); !e.protocol.empty();
                 e = proto::next_alpn_protocol(r.alpn, e.next)) {
                total += 1 + e.protocol.size();
            }
            expect(total == r.alpn.size());
        }
    } else {
        expect(r.hello_end == 0 && !r.has_alpn && r.alpn.empty() && !r.offers_tls13 && !r.ech && r.legacy_version == 0);
        expect((r.error == proto::tls_error::none) ==
               (r.status == proto::tls_status::need_more || r.status == proto::tls_status::not_tls));
    }
}

std::array<std::byte, 4 * 65536> g_stream;
std::array<std::byte, 65536> g_message;

// The hello's handshake bytes (records up to hello_end, their payloads), re-sent in records of `fragment` bytes.
void check_refragmented(std::span<const std::byte> in, const proto::client_hello_result& full, size_t fragment) {
    size_t msg_size = 0;
    for (size_t at = 0; at < full.hello_end;) {
        const size_t n = (std::to_integer<size_t>(in[at + 3]) << 8) | std::to_integer<size_t>(in[at + 4]);
        const size_t take = std::min(n, full.hello_end - at - proto::tls_record_header_size);
        std::memcpy(g_message.data() + msg_size, in.data() + at + proto::tls_record_header_size, take);
        msg_size += take;
        at += proto::tls_record_header_size + n;
    }
    size_t out = 0;
    for (size_t at = 0; at < msg_size; at += fragment) {
        const size_t n = std::min(fragment, msg_size - at);
        const std::array<std::byte, 5> header{std::byte{22}, std::byte{3}, std::byte{3}, std::byte(n >> 8),
                                              std::byte(n & 0xff)};
        std::memcpy(g_stream.data() + out, header.data(), header.size());
        std::memcpy(g_stream.data() + out + header.size(), g_message.data() + at, n);
        out += header.size() + n;
    }
    std::array<char, proto::name_buffer_size> name{};
    const auto stream = std::span<const std::byte>(g_stream).first(out);
    const proto::client_hello_result r =
        proto::sniff_client_hello(stream, name, {proto::default_max_client_hello_size, 1u << 20});
    check_result(stream, r, name);
    expect(r.status == full.status && r.sni.text == full.sni.text && r.sni.kind == full.sni.kind);
    expect(r.offers_tls13 == full.offers_tls13 && r.ech == full.ech && r.has_alpn == full.has_alpn);
    expect(r.legacy_version == full.legacy_version && r.hello_end == out);
}

void sniff_all_ways(std::span<const std::byte> in, size_t fragment) {
    std::array<char, proto::name_buffer_size> name{};
    const proto::client_hello_result full = proto::sniff_client_hello(in, name);
    check_result(in, full, name);

    std::array<char, proto::name_buffer_size> name2{};
    const auto check_prefix = [&](size_t k) {
        const proto::client_hello_result p = proto::sniff_client_hello(in.first(k), name2);
        check_result(in.first(k), p, name2);
        if (p.status != proto::tls_status::need_more) {
            expect(same(p, full));
        }
        if (complete(full)) {
            expect((p.status == proto::tls_status::need_more) == (k < full.hello_end));
            expect(p.status != proto::tls_status::need_more || p.needed <= full.hello_end);
        }
        expect((p.status == proto::tls_status::need_more) == (p.needed > k));
    };
    if (in.size() <= 300) {
        for (size_t k = 0; k < in.size(); ++k) {
            check_prefix(k);
        }
    } else {
        for (size_t k = 0; k < in.size(); k += 1 + in.size() / 64) {
            check_prefix(k);
        }
        if (complete(full)) {
            check_prefix(full.hello_end - 1);
            check_prefix(full.hello_end);
        }
    }
    if (complete(full)) {
        check_refragmented(in, full, fragment);
        check_refragmented(in, full, proto::tls_max_plaintext_record);
    }
}

std::array<std::byte, 65536> g_wrapped;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto in = std::as_bytes(std::span(data, size));
    const size_t fragment = 1 + (size == 0 ? 0 : data[size - 1] % 97);
    sniff_all_ways(in, fragment);

    // The input as a ClientHello body in one record, so the fuzzer reaches the extensions without first having
    // to get two length fields right.
    if (size + 9 <= proto::tls_max_plaintext_record) {
        const size_t record = size + 4;
        const std::array<uint8_t, 9> header{22,
                                            3,
                                            1,
                                            static_cast<uint8_t>(record >> 8),
                                            static_cast<uint8_t>(record),
                                            1,
                                            0,
                                            static_cast<uint8_t>(size >> 8),
                                            static_cast<uint8_t>(size)};
        std::memcpy(g_wrapped.data(), header.data(), header.size());
        if (size > 0) {
            std::memcpy(g_wrapped.data() + header.size(), data, size);
        }
        sniff_all_ways(std::span(g_wrapped).first(size + header.size()), fragment);
    }
    return 0;
}
