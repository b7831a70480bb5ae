// Fuzzes the DNS codec with one input read every way the data plane reads bytes: as a query (then every kind of
// response is built from it, into small and large buffers, and must read back as valid), as an upstream response
// (validation, cache TTL, TTL decrement, padding again), as names at any offset, and as a DoT byte stream.
#include "common/dns/framing.hh"
#include "common/dns/wire.hh"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace dns = zt::dns;

namespace {

// Invariants, not input checks: a failure here is a codec bug, so stop the fuzzer on it.
void expect(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

std::array<std::byte, dns::max_message_size> g_out;
std::array<std::byte, dns::max_message_size> g_copy;

constexpr std::array<std::array<uint8_t, 4>, 3> v4{{{203, 0, 113, 50}, {203, 0, 113, 51}, {10, 0, 0, 1}}};
constexpr std::array<std::array<uint8_t, 16>, 2> v6{{{0x20, 0x01, 0x0d, 0xb8}, {0xfe, 0x80}}};

void check_built(const dns::query& q, const dns::response_spec& spec, size_t cap) {
    const auto out = std::span(g_out).first(cap);
    const dns::build_result r = dns::build_response(q, spec, out);
    if (r.error != dns::build_error::none) {
        expect(r.error == dns::build_error::no_space || r.error == dns::build_error::bad_name ||
               (r.error == dns::build_error::bad_spec && spec.code == dns::rcode::badvers && !q.opt.present));
        return;
    }
    expect(r.size <= cap);
    const auto resp = std::span<const std::byte>(out.first(r.size));
    const dns::upstream_check c = dns::validate_response(resp, q.hdr.id, q.question);
    expect(c.error == dns::upstream_error::none);
    expect(c.rcode == static_cast<uint16_t>(spec.code));
    expect(c.truncated == r.truncated);
    const dns::ttl_result ttl = dns::response_cache_ttl(resp, 0, 3600);
    expect(ttl.status != dns::ttl_status::malformed);
    if (r.padded && r.size % dns::response_padding_block != 0) {
        expect(r.size == cap);
    }
    expect(dns::decrement_ttls(out.first(r.size), 1));
}

void as_query(std::span<const std::byte> in) {
    std::array<char, dns::name_buffer_size> name{};
    const dns::query q = dns::parse_query(in, name);
    switch (dns::reply_for(q.error)) {
    case dns::reply_action::drop:
        return;
    case dns::reply_action::formerr:
    case dns::reply_action::notimp: {
        const auto r = dns::build_header_response(in, dns::rcode::formerr, std::span(g_out).first(12));
        expect(r.error == dns::build_error::none && r.size == 12);
        return;
    }
    case dns::reply_action::answer:
    case dns::reply_action::badvers:
        break;
    }
    expect(q.qname.size() <= 253);
    for (char c : q.qname) {
        expect(c < 'A' || c > 'Z');
    }
    expect(q.question.size() == size_t{q.qname_wire_size} + 4);
    expect(q.question.data() == in.data() + dns::header_size);

    // SOA names that share suffixes with the question, so compression is exercised.
    std::string_view parent = q.qname;
    if (const size_t dot = parent.find('.'); dot != std::string_view::npos) {
        parent.remove_prefix(dot + 1);
    }
    const dns::soa_record soa{parent, q.qname, "hostmaster.internal.corp", 1, 2, 3, 4, 5, 6};
    const dns::rcode codes[] = {dns::rcode::noerror, dns::rcode::formerr, dns::rcode::servfail, dns::rcode::nxdomain,
                                dns::rcode::notimp,  dns::rcode::refused, dns::rcode::badvers};
    const size_t caps[] = {12, 64, 512, dns::max_message_size};
    for (const dns::rcode code : codes) {
        for (int kind = 0; kind < 4; ++kind) {
            dns::response_spec spec;
            spec.code = code;
            spec.ttl = 300;
            spec.a = kind == 0 || kind == 3 ? std::span(v4) : std::span<const std::array<uint8_t, 4>>();
            spec.aaaa = kind == 1 || kind == 3 ? std::span(v6) : std::span<const std::array<uint8_t, 16>>();
            spec.soa = kind == 2 || kind == 3 ? &soa : nullptr;
            spec.allow_padding = (kind & 1) == 0;
            for (const size_t cap : caps) {
                check_built(q, spec, cap);
            }
        }
    }
}

void as_response(std::span<const std::byte> in) {
    const auto h = dns::read_header(in);
    const uint16_t id = h ? h->id : 0;
    static constexpr std::array<uint8_t, 21> fixed_question = {3,   'w', 'w', 'w', 7,   'e', 'x', 'a', 'm', 'p', 'l',
                                                               'e', 3,   'c', 'o', 'm', 0,   0,   1,   0,   1};
    dns::validate_response(in, id, std::as_bytes(std::span(fixed_question)));
    // Its own question as the one we sent, so validation runs to the end on most inputs.
    if (in.size() > dns::header_size) {
        dns::validate_response(in, id, in.subspan(dns::header_size, std::min<size_t>(in.size() - 12, 259)));
    }
    const dns::ttl_result ttl = dns::response_cache_ttl(in, 5, 3600);
    if (ttl.status == dns::ttl_status::cacheable) {
        expect(ttl.ttl >= 5 && ttl.ttl <= 3600);
    }
    if (in.size() <= g_copy.size()) {
        const auto copy = std::span(g_copy).first(in.size());
        std::memcpy(copy.data(), in.data(), in.size());
        const bool ok = dns::decrement_ttls(copy, 100);
        if (ok) {
            // Decrementing never breaks the structure.
            expect(dns::response_cache_ttl(copy, 0, 3600).status != dns::ttl_status::malformed ||
                   ttl.status == dns::ttl_status::malformed);
        }
        dns::set_message_id(copy, 0xabcd);
        // Padding again (forwarded answers, RFC 8467): stays in bounds; a message that validated still does.
        std::memcpy(copy.data(), in.data(), in.size());
        const size_t padded = dns::pad_response(g_copy, in.size());
        expect(padded <= g_copy.size());
        if (padded != in.size() && in.size() > dns::header_size &&
            dns::validate_response(in, id, in.subspan(dns::header_size, std::min<size_t>(in.size() - 12, 259)))
                    .error == dns::upstream_error::none) {
            expect(dns::validate_response(std::span(g_copy).first(padded), id,
                                          in.subspan(dns::header_size, std::min<size_t>(in.size() - 12, 259)))
                       .error == dns::upstream_error::none);
        }
    }
}

// Names anywhere, as pointers from later records would reach them.
void names_anywhere(std::span<const std::byte> in) {
    std::array<char, dns::name_buffer_size> name{};
    for (size_t offset = dns::header_size; offset < std::min<size_t>(in.size(), 96); ++offset) {
        const dns::decoded_name n = dns::decode_name(in, offset, name);
        if (n.error == dns::name_error::none) {
            expect(n.text.size() <= 253 && n.end <= in.size() && n.end > offset && n.wire_size >= 1);
            expect(n.text.size() + 2 == n.wire_size || (n.text.empty() && n.wire_size == 1));
        }
    }
}

void as_stream(std::span<const std::byte> in) {
    std::span<const std::byte> rest = in;
    for (;;) {
        const dns::frame f = dns::next_frame(rest);
        if (f.status != dns::frame_status::complete) {
            if (f.status == dns::frame_status::need_more) {
                expect(f.needed > rest.size());
            }
            return;
        }
        expect(f.consumed == f.message.size() + 2 && f.consumed <= rest.size());
        rest = rest.subspan(f.consumed);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const auto in = std::as_bytes(std::span(data, size));
    as_query(in);
    as_response(in);
    names_anywhere(in);
    as_stream(in);
    return 0;
}
