// DNS wire codec and DoT framing: every parse error path, every response kind, the upstream helpers, zero
// allocations on the query path, and a round trip with BIND's dig over UDP and TCP.
#include "common/dns/framing.hh"
#include "common/dns/wire.hh"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace dns = zt::dns;

// Counts every allocation of this test binary, so a test can prove the query path allocates nothing.
namespace {
size_t g_allocations = 0;
}

void* operator new(size_t n) {
    ++g_allocations;
    if (void* p = std::malloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, size_t) noexcept {
    std::free(p);
}

namespace {

using bytes = std::vector<uint8_t>;

std::span<const std::byte> view(const bytes& b) {
    return std::as_bytes(std::span(b));
}
std::span<std::byte> wview(bytes& b) {
    return std::as_writable_bytes(std::span(b));
}

void put16(bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
}
void put32(bytes& b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v >> 16));
    put16(b, static_cast<uint16_t>(v));
}
uint16_t get16(const uint8_t* p) {
    return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
uint32_t get32(const uint8_t* p) {
    return (uint32_t{get16(p)} << 16) | get16(p + 2);
}

void put_name(bytes& b, const std::string& dotted) {
    size_t start = 0;
    while (start < dotted.size()) {
        size_t dot = dotted.find('.', start);
        if (dot == std::string::npos) {
            dot = dotted.size();
        }
        b.push_back(static_cast<uint8_t>(dot - start));
        b.insert(b.end(), dotted.begin() + static_cast<long>(start), dotted.begin() + static_cast<long>(dot));
        start = dot + 1;
    }
    b.push_back(0);
}

void put_header(bytes& b, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar) {
    put16(b, id);
    put16(b, flags);
    put16(b, qd);
    put16(b, an);
    put16(b, ns);
    put16(b, ar);
}

struct edns_opts {
    bool present = false;
    uint16_t udp = 4096;
    bool dnssec_ok = false;
    bool padding = false;
    uint8_t version = 0;
};

void put_opt(bytes& b, const edns_opts& e) {
    b.push_back(0);
    put16(b, dns::rr_type::opt);
    put16(b, e.udp);
    put32(b, (uint32_t{e.version} << 16) | (e.dnssec_ok ? 0x8000u : 0u));
    if (e.padding) {
        put16(b, 8);
        put16(b, dns::edns_option_padding);
        put16(b, 4);
        put32(b, 0);
    } else {
        put16(b, 0);
    }
}

bytes make_query(const std::string& name, uint16_t qtype, edns_opts e = {}, uint16_t id = 0x1234) {
    bytes b;
    put_header(b, id, 0x0100 | 0x0010, 1, 0, 0, e.present ? 1 : 0); // RD + CD
    put_name(b, name);
    put16(b, qtype);
    put16(b, dns::class_in);
    if (e.present) {
        put_opt(b, e);
    }
    return b;
}

dns::query parse(const bytes& msg, std::array<char, dns::name_buffer_size>& buf) {
    return dns::parse_query(view(msg), buf);
}

dns::query_error parse_error(const bytes& msg) {
    std::array<char, dns::name_buffer_size> buf{};
    return dns::parse_query(view(msg), buf).error;
}

// An independent (test-only, trusting) reader of responses, to check what the builder wrote.
struct test_rr {
    std::string owner;
    uint16_t type = 0;
    uint16_t klass = 0;
    uint32_t ttl = 0;
    size_t rdata = 0;
    uint16_t rdlen = 0;
};

struct test_msg {
    uint16_t id = 0, flags = 0, qd = 0, an = 0, ns = 0, ar = 0;
    std::string qname; // as on the wire, original case
    uint16_t qtype = 0, qclass = 0;
    std::vector<test_rr> rrs;
    size_t end = 0;
};

std::string read_name(const bytes& m, size_t& pos) {
    std::string out;
    size_t p = pos;
    bool jumped = false;
    for (int guard = 0; guard < 100; ++guard) {
        REQUIRE(p < m.size());
        const uint8_t len = m[p];
        if (len == 0) {
            if (!jumped) {
                pos = p + 1;
            }
            return out;
        }
        if ((len & 0xc0) == 0xc0) {
            if (!jumped) {
                pos = p + 2;
            }
            jumped = true;
            p = ((len & 0x3fu) << 8) | m[p + 1];
            continue;
        }
        if (!out.empty()) {
            out += '.';
        }
        out.append(reinterpret_cast<const char*>(&m[p + 1]), len);
        p += 1 + len;
    }
    FAIL("name loop");
    return out;
}

test_msg decode(const bytes& m) {
    test_msg t;
    REQUIRE(m.size() >= 12);
    t.id = get16(&m[0]);
    t.flags = get16(&m[2]);
    t.qd = get16(&m[4]);
    t.an = get16(&m[6]);
    t.ns = get16(&m[8]);
    t.ar = get16(&m[10]);
    size_t pos = 12;
    if (t.qd == 1) {
        t.qname = read_name(m, pos);
        t.qtype = get16(&m[pos]);
        t.qclass = get16(&m[pos + 2]);
        pos += 4;
    }
    for (int i = 0; i < t.an + t.ns + t.ar; ++i) {
        test_rr rr;
        rr.owner = read_name(m, pos);
        REQUIRE(pos + 10 <= m.size());
        rr.type = get16(&m[pos]);
        rr.klass = get16(&m[pos + 2]);
        rr.ttl = get32(&m[pos + 4]);
        rr.rdlen = get16(&m[pos + 8]);
        rr.rdata = pos + 10;
        pos += 10 + rr.rdlen;
        REQUIRE(pos <= m.size());
        t.rrs.push_back(rr);
    }
    t.end = pos;
    return t;
}

bytes build(const dns::query& q, const dns::response_spec& spec, size_t cap = 4096, dns::build_result* out = nullptr) {
    bytes b(cap);
    const dns::build_result r = dns::build_response(q, spec, wview(b));
    if (out != nullptr) {
        *out = r;
    }
    b.resize(r.error == dns::build_error::none ? r.size : 0);
    return b;
}

constexpr std::array<std::array<uint8_t, 4>, 2> two_v4{{{203, 0, 113, 50}, {203, 0, 113, 51}}};
constexpr std::array<std::array<uint8_t, 16>, 1> one_v6{
    {{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50}}};

// A response from an "upstream": question, answers, authority, additional, built by hand.
struct upstream_rr {
    uint16_t type;
    uint32_t ttl;
    bytes rdata;
};

bytes make_upstream(uint16_t id, uint16_t flags, const std::string& qname, uint16_t qtype,
                    const std::vector<upstream_rr>& an, const std::vector<upstream_rr>& ns, bool with_opt) {
    bytes b;
    put_header(b, id, flags, 1, static_cast<uint16_t>(an.size()), static_cast<uint16_t>(ns.size()), with_opt ? 1 : 0);
    put_name(b, qname);
    put16(b, qtype);
    put16(b, dns::class_in);
    for (const auto* section : {&an, &ns}) {
        for (const auto& rr : *section) {
            put16(b, 0xc00c);
            put16(b, rr.type);
            put16(b, dns::class_in);
            put32(b, rr.ttl);
            put16(b, static_cast<uint16_t>(rr.rdata.size()));
            b.insert(b.end(), rr.rdata.begin(), rr.rdata.end());
        }
    }
    if (with_opt) {
        put_opt(b, edns_opts{true, 1232, true, false, 0});
    }
    return b;
}

bytes soa_rdata(uint32_t minimum) {
    bytes r;
    put_name(r, "ns1.example.com");
    put16(r, 0xc00c); // rname compressed to the question name
    put32(r, 2024010101);
    put32(r, 3600);
    put32(r, 600);
    put32(r, 86400);
    put32(r, minimum);
    return r;
}

} // namespace

TEST_CASE("A query: parsed, answered with a compressed owner, validated as an upstream would") {
    const bytes msg = make_query("db.internal.corp", dns::rr_type::a);
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(msg, buf);
    REQUIRE(q.error == dns::query_error::none);
    CHECK(dns::reply_for(q.error) == dns::reply_action::answer);
    CHECK(q.hdr.id == 0x1234);
    CHECK(q.hdr.rd());
    CHECK(q.hdr.cd());
    CHECK_FALSE(q.hdr.qr());
    CHECK(q.hdr.opcode() == 0);
    CHECK(q.qname == "db.internal.corp");
    CHECK(q.qname_wire_size == 18);
    CHECK(q.qname_exact);
    CHECK(q.qtype == dns::rr_type::a);
    CHECK(q.qclass == dns::class_in);
    CHECK(q.question.size() == 18 + 4);
    CHECK_FALSE(q.opt.present);
    CHECK(q.trailing_bytes == 0);
    CHECK(dns::max_udp_response_size(q, 1232) == 512);

    dns::response_spec spec;
    spec.ttl = 300;
    spec.a = two_v4;
    dns::build_result r;
    const bytes resp = build(q, spec, 512, &r);
    REQUIRE(r.error == dns::build_error::none);
    CHECK_FALSE(r.truncated);
    CHECK_FALSE(r.padded);
    CHECK(resp.size() == 12 + 22 + 2 * 16);
    const test_msg t = decode(resp);
    CHECK(t.id == 0x1234);
    CHECK(t.flags == (0x8000 | 0x0400 | 0x0100 | 0x0010)); // QR AA RD CD, NOERROR
    CHECK(t.qd == 1);
    CHECK(t.an == 2);
    CHECK(t.ns == 0);
    CHECK(t.ar == 0);
    CHECK(t.qname == "db.internal.corp");
    REQUIRE(t.rrs.size() == 2);
    CHECK(get16(&resp[34]) == 0xc00c); // owner is a pointer to the question name
    CHECK(t.rrs[0].owner == "db.internal.corp");
    CHECK(t.rrs[0].type == dns::rr_type::a);
    CHECK(t.rrs[0].klass == dns::class_in);
    CHECK(t.rrs[0].ttl == 300);
    CHECK(t.rrs[0].rdlen == 4);
    CHECK(std::memcmp(&resp[t.rrs[1].rdata], two_v4[1].data(), 4) == 0);
    CHECK(t.end == resp.size());

    const dns::upstream_check c = dns::validate_response(view(resp), 0x1234, q.question);
    CHECK(c.error == dns::upstream_error::none);
    CHECK(c.rcode == 0);
    const dns::ttl_result ttl = dns::response_cache_ttl(view(resp), 0, 86400);
    CHECK(ttl.status == dns::ttl_status::cacheable);
    CHECK(ttl.ttl == 300);
}

TEST_CASE("AAAA query and RA flag") {
    const bytes msg = make_query("api.internal.corp", dns::rr_type::aaaa);
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(msg, buf);
    REQUIRE(q.error == dns::query_error::none);
    dns::response_spec spec;
    spec.ttl = 60;
    spec.aaaa = one_v6;
    spec.aa = false;
    spec.ra = true;
    const bytes resp = build(q, spec);
    const test_msg t = decode(resp);
    CHECK(t.flags == (0x8000 | 0x0100 | 0x0080 | 0x0010));
    REQUIRE(t.rrs.size() == 1);
    CHECK(t.rrs[0].type == dns::rr_type::aaaa);
    CHECK(t.rrs[0].rdlen == 16);
    CHECK(std::memcmp(&resp[t.rrs[0].rdata], one_v6[0].data(), 16) == 0);
}

TEST_CASE("mixed case: lookup name lower-cased, response echoes the original case") {
    const bytes msg = make_query("Db.InTernal.CORP", dns::rr_type::a);
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(msg, buf);
    REQUIRE(q.error == dns::query_error::none);
    CHECK(q.qname == "db.internal.corp");
    dns::response_spec spec;
    spec.a = std::span(two_v4).first(1);
    const bytes resp = build(q, spec);
    const test_msg t = decode(resp);
    CHECK(t.qname == "Db.InTernal.CORP");
    CHECK(t.rrs[0].owner == "Db.InTernal.CORP");
    // An upstream answering in another case still matches.
    bytes other = resp;
    other[13] = 'd';
    CHECK(dns::validate_response(view(other), 0x1234, q.question).error == dns::upstream_error::none);
}

TEST_CASE("root and odd names") {
    std::array<char, dns::name_buffer_size> buf{};
    const bytes root = make_query("", dns::rr_type::ns);
    dns::query q = parse(root, buf);
    REQUIRE(q.error == dns::query_error::none);
    CHECK(q.qname.empty());
    CHECK(q.qname_wire_size == 1);

    // A label holding a '.' byte: the dotted text is ambiguous, so the parser says so.
    bytes dotted;
    put_header(dotted, 1, 0, 1, 0, 0, 0);
    dotted.insert(dotted.end(), {3, 'a', '.', 'b', 4, 'c', 'o', 'r', 'p', 0, 0, 1, 0, 1});
    q = parse(dotted, buf);
    REQUIRE(q.error == dns::query_error::none);
    CHECK(q.qname == "a.b.corp");
    CHECK_FALSE(q.qname_exact);

    // The longest legal name: 255 wire bytes, 253 text bytes.
    std::string longest;
    for (int i = 0; i < 3; ++i) {
        longest += std::string(63, 'a' + static_cast<char>(i)) + ".";
    }
    longest += std::string(61, 'd');
    q = parse(make_query(longest, dns::rr_type::a), buf);
    REQUIRE(q.error == dns::query_error::none);
    CHECK(q.qname.size() == 253);
    CHECK(q.qname_wire_size == 255);
}

TEST_CASE("EDNS without padding: OPT echoed with our size and DO") {
    const bytes msg = make_query("db.internal.corp", dns::rr_type::a, edns_opts{true, 4096, true, false, 0});
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(msg, buf);
    REQUIRE(q.error == dns::query_error::none);
    CHECK(q.opt.present);
    CHECK(q.opt.udp_payload_size == 4096);
    CHECK(q.opt.dnssec_ok);
    CHECK_FALSE(q.opt.padding);
    CHECK(q.opt.version == 0);
    CHECK(dns::max_udp_response_size(q, 1232) == 1232);
    CHECK(dns::max_udp_response_size(q, 100) == 512);

    dns::response_spec spec;
    spec.a = two_v4;
    spec.udp_payload_size = 1232;
    dns::build_result r;
    const bytes resp = build(q, spec, 4096, &r);
    CHECK_FALSE(r.padded);
    const test_msg t = decode(resp);
    CHECK(t.ar == 1);
    REQUIRE(t.rrs.size() == 3);
    const test_rr& opt = t.rrs[2];
    CHECK(opt.owner.empty());
    CHECK(opt.type == dns::rr_type::opt);
    CHECK(opt.klass == 1232);
    CHECK(opt.ttl == 0x8000); // rcode 0, version 0, DO
    CHECK(opt.rdlen == 0);
    CHECK(resp.size() % dns::response_padding_block != 0);

    // A requestor size under 512 counts as 512 (RFC 6891 §6.2.5).
    const bytes small = make_query("x.corp", dns::rr_type::a, edns_opts{true, 100, false, false, 0});
    CHECK(dns::max_udp_response_size(parse(small, buf), 4096) == 512);
}

TEST_CASE("EDNS with padding: responses padded to blocks of 468, or to the limit") {
    const bytes msg = make_query("db.internal.corp", dns::rr_type::a, edns_opts{true, 1232, false, true, 0});
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(msg, buf);
    REQUIRE(q.error == dns::query_error::none);
    CHECK(q.opt.padding);
    dns::response_spec spec;
    spec.a = two_v4;
    dns::build_result r;
    bytes resp = build(q, spec, 65535, &r);
    CHECK(r.padded);
    CHECK(resp.size() == 468);
    test_msg t = decode(resp);
    REQUIRE(t.rrs.size() == 3);
    const test_rr& opt = t.rrs[2];
    CHECK(opt.type == dns::rr_type::opt);
    REQUIRE(opt.rdlen >= 4);
    CHECK(get16(&resp[opt.rdata]) == dns::edns_option_padding);
    CHECK(get16(&resp[opt.rdata + 2]) == opt.rdlen - 4);
    for (size_t i = opt.rdata + 4; i < resp.size(); ++i) {
        CHECK(resp[i] == 0);
    }
    CHECK(t.end == resp.size());

    // Bigger than one block: two blocks.
    std::vector<std::array<uint8_t, 16>> many(20, one_v6[0]);
    spec.a = {};
    spec.aaaa = many;
    resp = build(q, spec, 65535, &r);
    CHECK(resp.size() == 2 * 468);

    // Limit below the block: padded up to the limit.
    spec.aaaa = one_v6;
    resp = build(q, spec, 300, &r);
    CHECK(r.padded);
    CHECK(resp.size() == 300);

    // Not on this transport.
    spec.allow_padding = false;
    resp = build(q, spec, 65535, &r);
    CHECK_FALSE(r.padded);
    CHECK(resp.size() % 468 != 0);
}

TEST_CASE("forwarded answers are padded again (RFC 8467): Padding replaced, other options kept, OPT added") {
    std::array<char, dns::name_buffer_size> buf{};
    // An upstream answer without OPT: one is appended, with the padding.
    const bytes plain_q = make_query("www.public.test", dns::rr_type::a);
    const dns::query q = parse(plain_q, buf);
    REQUIRE(q.error == dns::query_error::none);
    dns::response_spec spec;
    spec.a = two_v4;
    bytes resp = build(q, spec);
    const size_t before = resp.size();
    resp.resize(4096);
    size_t len = dns::pad_response(wview(resp), before);
    CHECK(len == 468);
    resp.resize(len);
    test_msg t = decode(resp);
    CHECK(t.ar == 1);
    REQUIRE(t.rrs.size() == 3);
    CHECK(t.rrs[2].type == dns::rr_type::opt);
    CHECK(get16(&resp[t.rrs[2].rdata]) == dns::edns_option_padding);
    CHECK(t.end == resp.size());
    CHECK(dns::validate_response(view(resp), 0x1234, q.question).error == dns::upstream_error::none);

    // An answer with OPT holding a cookie and a stale Padding: the cookie stays, one Padding remains.
    const bytes edns_q = make_query("www.public.test", dns::rr_type::a, edns_opts{true, 1232, true, false, 0});
    const dns::query q2 = parse(edns_q, buf);
    REQUIRE(q2.error == dns::query_error::none);
    bytes r2 = build(q2, spec);
    test_msg t2 = decode(r2);
    REQUIRE(t2.rrs.size() == 3);
    const size_t opt_rdlen_at = t2.rrs[2].rdata - 2;
    const uint8_t options[] = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 12, 0, 3, 0, 0, 0};
    r2.insert(r2.end(), std::begin(options), std::end(options));
    r2[opt_rdlen_at + 1] = sizeof options;
    const size_t before2 = r2.size();
    r2.resize(4096);
    len = dns::pad_response(wview(r2), before2);
    CHECK(len == 468);
    r2.resize(len);
    t2 = decode(r2);
    REQUIRE(t2.rrs.size() == 3);
    const test_rr& opt = t2.rrs[2];
    CHECK(get16(&r2[opt.rdata]) == 10); // the cookie, untouched
    CHECK(r2[opt.rdata + 4] == 1);
    CHECK(r2[opt.rdata + 11] == 8);
    CHECK(get16(&r2[opt.rdata + 12]) == dns::edns_option_padding);
    CHECK(opt.rdata + 16 + get16(&r2[opt.rdata + 14]) == r2.size());
    CHECK((get32(&r2[opt.rdata - 6]) & 0x8000u) != 0); // DO kept

    // Too little room for a whole block: padded up to the room there is.
    bytes r3 = build(q, spec);
    const size_t before3 = r3.size();
    r3.resize(before3 + 40);
    CHECK(dns::pad_response(wview(r3), before3) == before3 + 40);

    // OPT that is not the last record, trailing garbage, a cut message: left as they are.
    bytes r4 = build(q2, spec);
    put16(r4, 0); // not a record: trailing bytes
    const size_t before4 = r4.size();
    r4.resize(4096);
    CHECK(dns::pad_response(wview(r4), before4) == before4);
    bytes r5 = build(q, spec);
    CHECK(dns::pad_response(wview(r5), r5.size() - 3) == r5.size() - 3);
}

TEST_CASE("compression pointers: loops, forward and header pointers are rejected") {
    // Question name is a pointer to itself.
    bytes self;
    put_header(self, 1, 0, 1, 0, 0, 0);
    self.insert(self.end(), {0xc0, 0x0c, 0, 1, 0, 1});
    CHECK(parse_error(self) == dns::query_error::bad_pointer);
    CHECK(dns::reply_for(dns::query_error::bad_pointer) == dns::reply_action::formerr);

    // Label then a pointer back to the name's own start: a loop.
    bytes loop;
    put_header(loop, 1, 0, 1, 0, 0, 0);
    loop.insert(loop.end(), {1, 'a', 0xc0, 0x0c, 0, 1, 0, 1});
    CHECK(parse_error(loop) == dns::query_error::bad_pointer);

    // Pointer to a later offset.
    bytes fwd;
    put_header(fwd, 1, 0, 1, 0, 0, 0);
    fwd.insert(fwd.end(), {0xc0, 0x12, 0, 1, 0, 1, 1, 'a', 0});
    CHECK(parse_error(fwd) == dns::query_error::bad_pointer);

    // Pointer into the header.
    bytes hdr;
    put_header(hdr, 1, 0, 1, 0, 0, 0);
    hdr.insert(hdr.end(), {0xc0, 0x02, 0, 1, 0, 1});
    CHECK(parse_error(hdr) == dns::query_error::bad_pointer);

    // A record whose owner points to itself, in the additional section.
    bytes rr = make_query("a.corp", dns::rr_type::a);
    rr[11] = 1;
    const size_t at = rr.size();
    rr.insert(rr.end(),
              {static_cast<uint8_t>(0xc0 | (at >> 8)), static_cast<uint8_t>(at), 0, 1, 0, 1, 0, 0, 0, 0, 0, 0});
    CHECK(parse_error(rr) == dns::query_error::bad_pointer);

    // A well-formed backward pointer in the additional section is fine.
    bytes ok = make_query("a.corp", dns::rr_type::a);
    ok[11] = 1;
    ok.insert(ok.end(), {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4});
    CHECK(parse_error(ok) == dns::query_error::none);

    // Upstream responses: pointer chains that loop are malformed, not hangs.
    bytes up;
    put_header(up, 7, 0x8000, 1, 0, 0, 0);
    up.insert(up.end(), {1, 'a', 0xc0, 0x0c, 0, 1, 0, 1});
    const bytes sent_q = {1, 'a', 0, 0, 1, 0, 1};
    CHECK(dns::validate_response(view(up), 7, view(sent_q)).error == dns::upstream_error::malformed);
}

TEST_CASE("decode_name follows backward pointers, with a hop limit") {
    // "internal.corp" at 12, "db" + pointer to it, "X" + pointer to that.
    bytes m;
    put_header(m, 1, 0x8000, 0, 0, 0, 0);
    put_name(m, "Internal.Corp");
    const size_t db_at = m.size();
    m.insert(m.end(), {2, 'd', 'b', 0xc0, 0x0c});
    const size_t x_at = m.size();
    m.insert(m.end(), {1, 'X', 0xc0, static_cast<uint8_t>(db_at)});
    std::array<char, dns::name_buffer_size> buf{};
    dns::decoded_name n = dns::decode_name(view(m), x_at, buf);
    REQUIRE(n.error == dns::name_error::none);
    CHECK(n.text == "x.db.internal.corp");
    CHECK(n.end == x_at + 4);
    CHECK(n.wire_size == 20);
    n = dns::decode_name(view(m), db_at, buf);
    CHECK(n.text == "db.internal.corp");
    CHECK(n.end == x_at);
    CHECK(dns::decode_name(view(m), m.size(), buf).error == dns::name_error::truncated);
    CHECK(dns::decode_name(view(m), m.size() - 1, buf).error == dns::name_error::truncated); // half a pointer

    // A chain of pointers, each to the one before: 127 hops decode, 128 do not.
    for (const size_t hops : {size_t{127}, size_t{128}}) {
        bytes chain;
        put_header(chain, 1, 0x8000, 0, 0, 0, 0);
        put_name(chain, "corp");
        size_t prev = 12;
        for (size_t i = 0; i < hops; ++i) {
            const size_t at = chain.size();
            chain.push_back(static_cast<uint8_t>(0xc0 | (prev >> 8)));
            chain.push_back(static_cast<uint8_t>(prev));
            prev = at;
        }
        n = dns::decode_name(view(chain), prev, buf);
        CAPTURE(hops);
        CHECK(n.error == (hops == 127 ? dns::name_error::none : dns::name_error::bad_pointer));
        CHECK(n.text == (hops == 127 ? "corp" : ""));
    }

    // Pointing into the middle of the name that points: a loop, rejected.
    bytes loop;
    put_header(loop, 1, 0x8000, 0, 0, 0, 0);
    put_name(loop, "a");
    const size_t at = loop.size();
    loop.insert(loop.end(), {1, 'b', 1, 'c', 0xc0, static_cast<uint8_t>(at + 2)});
    CHECK(dns::decode_name(view(loop), at, buf).error == dns::name_error::bad_pointer);
    // Names over 255 bytes built from pointers are caught too.
    bytes big;
    put_header(big, 1, 0x8000, 0, 0, 0, 0);
    size_t prev = 0;
    for (int i = 0; i < 5; ++i) {
        const size_t here = big.size();
        big.push_back(63);
        big.insert(big.end(), 63, 'z');
        if (i == 0) {
            big.push_back(0);
        } else {
            big.push_back(static_cast<uint8_t>(0xc0 | (prev >> 8)));
            big.push_back(static_cast<uint8_t>(prev));
        }
        prev = here;
    }
    CHECK(dns::decode_name(view(big), prev, buf).error == dns::name_error::name_too_long);
}

TEST_CASE("header and counts") {
    bytes msg = make_query("a.corp", dns::rr_type::a);
    // Truncated header: nothing to answer.
    const bytes short_msg(msg.begin(), msg.begin() + 11);
    CHECK(parse_error(short_msg) == dns::query_error::short_header);
    CHECK(dns::reply_for(dns::query_error::short_header) == dns::reply_action::drop);
    CHECK(parse_error(bytes{}) == dns::query_error::short_header);

    // Counts larger than the message.
    bytes counts = msg;
    counts[10] = 0x03; // arcount 1000
    counts[11] = 0xe8;
    CHECK(parse_error(counts) == dns::query_error::counts_exceed_message);
    bytes one_more = msg;
    one_more[7] = 1; // an answer that is not there
    CHECK(parse_error(one_more) == dns::query_error::counts_exceed_message);
    one_more.insert(one_more.end(), 11, 0); // root owner, type 0, rdlength 0... then nothing missing
    CHECK(parse_error(one_more) == dns::query_error::none);
    one_more[one_more.size() - 1] = 5; // rdlength 5 with no rdata
    CHECK(parse_error(one_more) == dns::query_error::truncated);

    // qdcount 0 and 2.
    bytes qd0 = msg;
    qd0[5] = 0;
    CHECK(parse_error(qd0) == dns::query_error::bad_qdcount);
    bytes qd2 = msg;
    qd2[5] = 2;
    CHECK(parse_error(qd2) == dns::query_error::bad_qdcount);
    CHECK(dns::reply_for(dns::query_error::bad_qdcount) == dns::reply_action::formerr);

    // A response is never answered; other opcodes get NOTIMP.
    bytes resp = msg;
    resp[2] |= 0x80;
    CHECK(parse_error(resp) == dns::query_error::is_response);
    CHECK(dns::reply_for(dns::query_error::is_response) == dns::reply_action::drop);
    bytes notify = msg;
    notify[2] = static_cast<uint8_t>(4 << 3);
    CHECK(parse_error(notify) == dns::query_error::not_implemented);
    CHECK(dns::reply_for(dns::query_error::not_implemented) == dns::reply_action::notimp);

    // Trailing bytes are ignored and counted.
    bytes trailing = msg;
    trailing.insert(trailing.end(), {0xde, 0xad, 0xbe});
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(trailing, buf);
    CHECK(q.error == dns::query_error::none);
    CHECK(q.trailing_bytes == 3);
    CHECK(q.question.size() == 8 + 4);
}

TEST_CASE("truncated questions, long labels, long names") {
    const bytes msg = make_query("abc.corp", dns::rr_type::a);
    for (size_t cut = 12; cut < msg.size(); ++cut) {
        const bytes part(msg.begin(), msg.begin() + static_cast<long>(cut));
        const auto e = parse_error(part);
        CAPTURE(cut);
        CHECK((e == dns::query_error::truncated || e == dns::query_error::counts_exceed_message));
    }

    bytes label64;
    put_header(label64, 1, 0, 1, 0, 0, 0);
    label64.push_back(64);
    label64.insert(label64.end(), 64, 'a');
    label64.insert(label64.end(), {0, 0, 1, 0, 1});
    CHECK(parse_error(label64) == dns::query_error::label_too_long);
    label64[12] = 0x80; // reserved label type
    CHECK(parse_error(label64) == dns::query_error::label_too_long);

    std::string too_long;
    for (int i = 0; i < 4; ++i) {
        too_long += std::string(63, 'x') + ".";
    }
    too_long += "y"; // 4 * 64 + 2 + 1 = 259 wire bytes
    CHECK(parse_error(make_query(too_long, dns::rr_type::a)) == dns::query_error::name_too_long);
}

TEST_CASE("bad OPT records and BADVERS") {
    const edns_opts e{true, 1232, false, false, 0};
    // Two OPT records.
    bytes two = make_query("a.corp", dns::rr_type::a, e);
    two[11] = 2;
    put_opt(two, e);
    CHECK(parse_error(two) == dns::query_error::bad_opt);
    // OPT in the answer section.
    bytes in_answer = make_query("a.corp", dns::rr_type::a, e);
    in_answer[7] = 1;
    in_answer[11] = 0;
    CHECK(parse_error(in_answer) == dns::query_error::bad_opt);
    // OPT not owned by the root.
    bytes owned = make_query("a.corp", dns::rr_type::a);
    owned[11] = 1;
    owned.insert(owned.end(), {0xc0, 0x0c, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0});
    CHECK(parse_error(owned) == dns::query_error::bad_opt);
    // An option running past RDATA.
    bytes overrun = make_query("a.corp", dns::rr_type::a);
    overrun[11] = 1;
    overrun.insert(overrun.end(), {0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 6, 0, 12, 0, 4, 0, 0});
    CHECK(parse_error(overrun) == dns::query_error::bad_opt);
    // Half an option header.
    bytes half = make_query("a.corp", dns::rr_type::a);
    half[11] = 1;
    half.insert(half.end(), {0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 2, 0, 12});
    CHECK(parse_error(half) == dns::query_error::bad_opt);

    // EDNS version 1: BADVERS, answered with the question and an OPT carrying the upper rcode bits.
    const bytes v1 = make_query("a.corp", dns::rr_type::a, edns_opts{true, 1232, true, false, 1});
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(v1, buf);
    CHECK(q.error == dns::query_error::bad_edns_version);
    CHECK(q.opt.version == 1);
    CHECK(dns::reply_for(q.error) == dns::reply_action::badvers);
    dns::response_spec spec;
    spec.code = dns::rcode::badvers;
    const bytes resp = build(q, spec);
    const test_msg t = decode(resp);
    CHECK((t.flags & 0xf) == 0);
    REQUIRE(t.rrs.size() == 1);
    CHECK(t.rrs[0].ttl == ((1u << 24) | 0x8000)); // extended rcode 1 (16 >> 4), version 0, DO
    const dns::upstream_check c = dns::validate_response(view(resp), 0x1234, q.question);
    CHECK(c.error == dns::upstream_error::none);
    CHECK(c.rcode == 16);

    // BADVERS needs an OPT to carry it.
    const bytes plain = make_query("a.corp", dns::rr_type::a);
    dns::build_result r;
    build(parse(plain, buf), spec, 512, &r);
    CHECK(r.error == dns::build_error::bad_spec);
}

TEST_CASE("rcodes and header-only error responses") {
    const bytes msg = make_query("a.corp", dns::rr_type::a);
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(msg, buf);
    for (auto code : {dns::rcode::noerror, dns::rcode::formerr, dns::rcode::servfail, dns::rcode::nxdomain,
                      dns::rcode::notimp, dns::rcode::refused}) {
        dns::response_spec spec;
        spec.code = code;
        spec.aa = false;
        const bytes resp = build(q, spec);
        const test_msg t = decode(resp);
        CHECK((t.flags & 0xf) == static_cast<uint16_t>(code));
        CHECK(t.an == 0); // NODATA for noerror
        CHECK(resp.size() == 12 + 12);
        CHECK(dns::validate_response(view(resp), 0x1234, q.question).rcode == static_cast<uint16_t>(code));
    }

    bytes bad = msg;
    bad[5] = 2; // qdcount 2
    REQUIRE(parse_error(bad) == dns::query_error::bad_qdcount);
    std::array<std::byte, 12> out{};
    dns::build_result r = dns::build_header_response(view(bad), dns::rcode::formerr, out);
    REQUIRE(r.error == dns::build_error::none);
    CHECK(r.size == 12);
    const bytes resp(reinterpret_cast<const uint8_t*>(out.data()), reinterpret_cast<const uint8_t*>(out.data()) + 12);
    const test_msg t = decode(resp);
    CHECK(t.id == 0x1234);
    CHECK(t.flags == (0x8000 | 0x0100 | 0x0010 | 1));
    CHECK(t.qd == 0);
    CHECK(t.an + t.ns + t.ar == 0);

    // NOTIMP keeps the opcode.
    bytes notify = msg;
    notify[2] = static_cast<uint8_t>(4 << 3);
    r = dns::build_header_response(view(notify), dns::rcode::notimp, out);
    CHECK(get16(reinterpret_cast<const uint8_t*>(out.data()) + 2) == (0x8000 | (4 << 11) | 0x0010 | 4));

    CHECK(dns::build_header_response(view(bytes(11)), dns::rcode::formerr, out).error == dns::build_error::bad_spec);
    CHECK(dns::build_header_response(view(msg), dns::rcode::badvers, out).error == dns::build_error::bad_spec);
    CHECK(dns::build_header_response(view(msg), dns::rcode::formerr, std::span(out).first(11)).error ==
          dns::build_error::no_space);
}

TEST_CASE("buffer too small: TC response, or no_space") {
    const bytes msg = make_query("db.internal.corp", dns::rr_type::aaaa, edns_opts{true, 512, false, false, 0});
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(msg, buf);
    REQUIRE(q.error == dns::query_error::none);
    std::vector<std::array<uint8_t, 16>> many(30, one_v6[0]); // 30 * 28 bytes: over 512
    dns::response_spec spec;
    spec.aaaa = many;
    dns::build_result r;
    const bytes resp = build(q, spec, dns::max_udp_response_size(q, 1232), &r);
    REQUIRE(r.error == dns::build_error::none);
    CHECK(r.truncated);
    const test_msg t = decode(resp);
    CHECK((t.flags & 0x0200) != 0);
    CHECK(t.qd == 1);
    CHECK(t.an == 0);
    CHECK(t.ar == 1); // the OPT still goes out
    CHECK(t.rrs[0].type == dns::rr_type::opt);
    CHECK(resp.size() == 12 + 22 + 11);
    CHECK(dns::validate_response(view(resp), 0x1234, q.question).truncated);
    CHECK(dns::response_cache_ttl(view(resp), 0, 100).status == dns::ttl_status::uncacheable);

    // Exactly fitting is not truncated.
    const size_t exact = 12 + 22 + 30 * 28 + 11;
    build(q, spec, exact, &r);
    CHECK_FALSE(r.truncated);
    CHECK(r.size == exact);
    build(q, spec, exact - 1, &r);
    CHECK(r.truncated);

    // Not even header + question + OPT.
    build(q, spec, 12 + 22 + 10, &r);
    CHECK(r.error == dns::build_error::no_space);

    // An unparsed query cannot be answered.
    dns::query broken;
    broken.error = dns::query_error::truncated;
    build(broken, spec, 512, &r);
    CHECK(r.error == dns::build_error::bad_spec);
}

TEST_CASE("NXDOMAIN and NODATA with SOA for negative caching") {
    const bytes msg = make_query("Missing.Internal.Corp", dns::rr_type::a);
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(msg, buf);
    REQUIRE(q.error == dns::query_error::none);
    dns::soa_record soa;
    soa.zone = "internal.corp";
    soa.mname = "ns1.internal.corp.";
    soa.rname = "hostmaster.example.com";
    soa.serial = 42;
    soa.minimum = 60;
    soa.ttl = 3600;
    dns::response_spec spec;
    spec.code = dns::rcode::nxdomain;
    spec.soa = &soa;
    const bytes resp = build(q, spec);
    const test_msg t = decode(resp);
    CHECK((t.flags & 0xf) == 3);
    CHECK(t.an == 0);
    CHECK(t.ns == 1);
    REQUIRE(t.rrs.size() == 1);
    const test_rr& rr = t.rrs[0];
    CHECK(rr.type == dns::rr_type::soa);
    CHECK(rr.owner == "Internal.Corp"); // a pointer into the question
    CHECK(rr.ttl == 60);                // min(SOA TTL, MINIMUM)
    size_t pos = rr.rdata;
    CHECK(read_name(resp, pos) == "ns1.Internal.Corp");
    CHECK(read_name(resp, pos) == "hostmaster.example.com");
    CHECK(get32(&resp[pos]) == 42);
    CHECK(get32(&resp[pos + 16]) == 60);
    CHECK(pos + 20 == rr.rdata + rr.rdlen);
    CHECK(t.end == resp.size());
    // Compression made it small: 2-byte owner, mname = 4 bytes of "ns1" + pointer.
    CHECK(resp.size() == 12 + 27 + (2 + 10 + 6 + 24 + 20));

    const dns::ttl_result ttl = dns::response_cache_ttl(view(resp), 0, 86400);
    CHECK(ttl.status == dns::ttl_status::cacheable);
    CHECK(ttl.ttl == 60);
    CHECK(dns::validate_response(view(resp), 0x1234, q.question).rcode == 3);

    // NODATA: NOERROR, no answers, SOA.
    spec.code = dns::rcode::noerror;
    soa.ttl = 30;
    const bytes nodata = build(q, spec);
    CHECK(dns::response_cache_ttl(view(nodata), 0, 86400).ttl == 30);

    // The zone is the question name itself; the root zone.
    const bytes apex_msg = make_query("internal.CORP", dns::rr_type::aaaa);
    const dns::query apex = parse(apex_msg, buf);
    const bytes apex_resp = build(apex, spec);
    CHECK(get16(&apex_resp[12 + apex.question.size()]) == 0xc00c);
    soa.zone = "";
    const bytes root_resp = build(apex, spec);
    CHECK(decode(root_resp).rrs[0].owner.empty());

    // Invalid names from the caller.
    dns::build_result r;
    const std::string long_label(64, 'x');
    for (const std::string& bad :
         {std::string("a..b"), std::string(".a"), std::string(".."), std::string("a.b.."), long_label}) {
        soa.zone = bad;
        build(apex, spec, 512, &r);
        CAPTURE(bad);
        CHECK(r.error == dns::build_error::bad_name);
    }
}

TEST_CASE("cache TTL of upstream responses") {
    const bytes a4 = {1, 2, 3, 4};
    bytes ns_rdata;
    put_name(ns_rdata, "ns.example.com");
    // Positive: min over answer + authority; additional (OPT) ignored.
    bytes resp = make_upstream(9, 0x8180, "www.example.com", dns::rr_type::a,
                               {{dns::rr_type::a, 300, a4}, {dns::rr_type::a, 120, a4}},
                               {{dns::rr_type::ns, 86400, ns_rdata}}, true);
    dns::ttl_result r = dns::response_cache_ttl(view(resp), 0, 86400);
    CHECK(r.status == dns::ttl_status::cacheable);
    CHECK(r.ttl == 120);
    CHECK(dns::response_cache_ttl(view(resp), 200, 86400).ttl == 200); // floor
    CHECK(dns::response_cache_ttl(view(resp), 0, 100).ttl == 100);     // cap

    // TTL with the top bit set counts as 0.
    resp =
        make_upstream(9, 0x8180, "www.example.com", dns::rr_type::a, {{dns::rr_type::a, 0x80000000u, a4}}, {}, false);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).ttl == 0);

    // NXDOMAIN: min(SOA TTL, MINIMUM).
    resp = make_upstream(9, 0x8183, "nope.example.com", dns::rr_type::a, {}, {{dns::rr_type::soa, 900, soa_rdata(300)}},
                         true);
    r = dns::response_cache_ttl(view(resp), 0, 86400);
    CHECK(r.status == dns::ttl_status::cacheable);
    CHECK(r.ttl == 300);
    resp = make_upstream(9, 0x8183, "nope.example.com", dns::rr_type::a, {}, {{dns::rr_type::soa, 90, soa_rdata(300)}},
                         false);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).ttl == 90);
    // NXDOMAIN after a CNAME: the CNAME's TTL counts too.
    bytes cname;
    put_name(cname, "gone.example.com");
    resp = make_upstream(9, 0x8183, "nope.example.com", dns::rr_type::a, {{dns::rr_type::cname, 20, cname}},
                         {{dns::rr_type::soa, 900, soa_rdata(300)}}, false);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).ttl == 20);

    // Negative without SOA, SERVFAIL, REFUSED, TC: not cached.
    resp = make_upstream(9, 0x8183, "nope.example.com", dns::rr_type::a, {}, {}, false);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).status == dns::ttl_status::uncacheable);
    resp = make_upstream(9, 0x8180, "nope.example.com", dns::rr_type::a, {}, {}, false);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).status == dns::ttl_status::uncacheable);
    resp = make_upstream(9, 0x8182, "x.example.com", dns::rr_type::a, {}, {{dns::rr_type::soa, 9, soa_rdata(9)}}, 0);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).status == dns::ttl_status::uncacheable);
    resp = make_upstream(9, 0x8185, "x.example.com", dns::rr_type::a, {}, {}, false);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).status == dns::ttl_status::uncacheable);
    resp = make_upstream(9, 0x8380, "x.example.com", dns::rr_type::a, {{dns::rr_type::a, 5, a4}}, {}, false);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).status == dns::ttl_status::uncacheable);

    // Malformed: cut anywhere inside the records; SOA RDATA of the wrong size.
    resp = make_upstream(9, 0x8180, "www.example.com", dns::rr_type::a, {{dns::rr_type::a, 300, a4}},
                         {{dns::rr_type::ns, 86400, ns_rdata}}, true);
    for (size_t cut = 33; cut < resp.size(); ++cut) {
        const bytes part(resp.begin(), resp.begin() + static_cast<long>(cut));
        CAPTURE(cut);
        CHECK(dns::response_cache_ttl(view(part), 0, 86400).status == dns::ttl_status::malformed);
    }
    bytes bad_soa = soa_rdata(5);
    bad_soa.push_back(0);
    resp = make_upstream(9, 0x8183, "nope.example.com", dns::rr_type::a, {}, {{dns::rr_type::soa, 9, bad_soa}}, 0);
    CHECK(dns::response_cache_ttl(view(resp), 0, 86400).status == dns::ttl_status::malformed);
    CHECK(dns::response_cache_ttl(view(bytes(5)), 0, 86400).status == dns::ttl_status::malformed);
}

TEST_CASE("TTL decrement in place when serving from cache") {
    const bytes a4 = {1, 2, 3, 4};
    bytes resp = make_upstream(9, 0x8180, "www.example.com", dns::rr_type::a,
                               {{dns::rr_type::a, 300, a4}, {dns::rr_type::a, 5, a4}},
                               {{dns::rr_type::soa, 0x90000000u, soa_rdata(60)}}, true);
    const bytes before = resp;
    REQUIRE(dns::decrement_ttls(wview(resp), 10));
    test_msg t = decode(resp);
    REQUIRE(t.rrs.size() == 4);
    CHECK(t.rrs[0].ttl == 290);
    CHECK(t.rrs[1].ttl == 0);
    CHECK(t.rrs[2].ttl == 0);      // over 2^31-1 counted as 0
    CHECK(t.rrs[3].ttl == 0x8000); // OPT flags untouched
    CHECK(t.rrs[3].type == dns::rr_type::opt);
    REQUIRE(dns::decrement_ttls(wview(resp), 0));
    CHECK(decode(resp).rrs[0].ttl == 290);

    // Only TTL bytes changed.
    size_t changed = 0;
    for (size_t i = 0; i < resp.size(); ++i) {
        changed += resp[i] != before[i];
    }
    CHECK(changed <= 3 * 4);

    bytes cut(resp.begin(), resp.end() - 1);
    CHECK_FALSE(dns::decrement_ttls(wview(cut), 1));
    bytes tiny(11);
    CHECK_FALSE(dns::decrement_ttls(wview(tiny), 1));
}

TEST_CASE("upstream response validation") {
    const bytes query_msg = make_query("www.example.com", dns::rr_type::a);
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = parse(query_msg, buf);
    const bytes a4 = {1, 2, 3, 4};
    const bytes good =
        make_upstream(0xbeef, 0x8180, "WWW.Example.com", dns::rr_type::a, {{dns::rr_type::a, 300, a4}}, {}, true);
    CHECK(dns::validate_response(view(good), 0xbeef, q.question).error == dns::upstream_error::none);
    CHECK(dns::validate_response(view(good), 0xbeee, q.question).error == dns::upstream_error::id_mismatch);

    bytes not_resp = good;
    not_resp[2] &= 0x7f;
    CHECK(dns::validate_response(view(not_resp), 0xbeef, q.question).error == dns::upstream_error::not_response);
    bytes opcode = good;
    opcode[2] |= 0x08;
    CHECK(dns::validate_response(view(opcode), 0xbeef, q.question).error == dns::upstream_error::bad_opcode);
    bytes qd = good;
    qd[5] = 0;
    CHECK(dns::validate_response(view(qd), 0xbeef, q.question).error == dns::upstream_error::bad_qdcount);

    const bytes other_name = make_upstream(0xbeef, 0x8180, "www.example.org", dns::rr_type::a, {}, {}, false);
    CHECK(dns::validate_response(view(other_name), 0xbeef, q.question).error == dns::upstream_error::qname_mismatch);
    const bytes longer = make_upstream(0xbeef, 0x8180, "www.example.com.au", dns::rr_type::a, {}, {}, false);
    CHECK(dns::validate_response(view(longer), 0xbeef, q.question).error == dns::upstream_error::qname_mismatch);
    const bytes shorter = make_upstream(0xbeef, 0x8180, "example.com", dns::rr_type::a, {}, {}, false);
    CHECK(dns::validate_response(view(shorter), 0xbeef, q.question).error == dns::upstream_error::qname_mismatch);
    const bytes other_type = make_upstream(0xbeef, 0x8180, "www.example.com", dns::rr_type::aaaa, {}, {}, false);
    CHECK(dns::validate_response(view(other_type), 0xbeef, q.question).error == dns::upstream_error::qtype_mismatch);
    bytes other_class = good;
    other_class[12 + 17 + 3] = 3; // CH
    CHECK(dns::validate_response(view(other_class), 0xbeef, q.question).error == dns::upstream_error::qclass_mismatch);

    bytes cut(good.begin(), good.end() - 1);
    CHECK(dns::validate_response(view(cut), 0xbeef, q.question).error == dns::upstream_error::malformed);
    bytes extra_count = good;
    extra_count[7] = 2;
    CHECK(dns::validate_response(view(extra_count), 0xbeef, q.question).error == dns::upstream_error::malformed);
    CHECK(dns::validate_response(view(bytes(3)), 0xbeef, q.question).error == dns::upstream_error::short_header);
    // A broken "sent" question is a mismatch, not a crash.
    CHECK(dns::validate_response(view(good), 0xbeef, view(bytes{3, 'w'})).error == dns::upstream_error::qname_mismatch);

    // Id rewrite for forwarding.
    bytes fwd = query_msg;
    REQUIRE(dns::set_message_id(wview(fwd), 0xbeef));
    const auto h = dns::read_header(view(fwd));
    REQUIRE(h.has_value());
    CHECK(h->id == 0xbeef);
    CHECK(h->flags == 0x0110);
    bytes tiny(4);
    CHECK_FALSE(dns::set_message_id(wview(tiny), 1));
    CHECK_FALSE(dns::read_header(view(tiny)).has_value());
}

TEST_CASE("DoT framing: partial frames, several frames, empty frame") {
    bytes stream;
    const bytes m1 = make_query("a.corp", dns::rr_type::a, {}, 1);
    const bytes m2 = make_query("bb.corp", dns::rr_type::aaaa, {}, 2);
    for (const bytes* m : {&m1, &m2}) {
        std::array<std::byte, 2> prefix{};
        REQUIRE(dns::write_frame_prefix(prefix, m->size()));
        stream.push_back(static_cast<uint8_t>(prefix[0]));
        stream.push_back(static_cast<uint8_t>(prefix[1]));
        stream.insert(stream.end(), m->begin(), m->end());
    }
    // Every prefix of the stream shorter than the first frame: need more, with the right target.
    for (size_t n = 0; n < 2 + m1.size(); ++n) {
        const dns::frame f = dns::next_frame(view(stream).first(n));
        CAPTURE(n);
        CHECK(f.status == dns::frame_status::need_more);
        CHECK(f.needed == (n < 2 ? 2 : 2 + m1.size()));
    }
    std::span<const std::byte> rest = view(stream);
    dns::frame f = dns::next_frame(rest);
    REQUIRE(f.status == dns::frame_status::complete);
    CHECK(f.consumed == 2 + m1.size());
    CHECK(f.message.size() == m1.size());
    CHECK(std::memcmp(f.message.data(), m1.data(), m1.size()) == 0);
    rest = rest.subspan(f.consumed);
    f = dns::next_frame(rest);
    REQUIRE(f.status == dns::frame_status::complete);
    CHECK(f.message.size() == m2.size());
    CHECK(std::memcmp(f.message.data(), m2.data(), m2.size()) == 0);
    rest = rest.subspan(f.consumed);
    CHECK(rest.empty());
    CHECK(dns::next_frame(rest).status == dns::frame_status::need_more);

    const bytes empty = {0, 0, 1, 2, 3};
    CHECK(dns::next_frame(view(empty)).status == dns::frame_status::empty_frame);

    const bytes big = {0xff, 0xff};
    f = dns::next_frame(view(big));
    CHECK(f.status == dns::frame_status::need_more);
    CHECK(f.needed == dns::max_frame_size);

    std::array<std::byte, 2> p{};
    CHECK(dns::write_frame_prefix(p, 65535));
    CHECK(p[0] == std::byte{0xff});
    CHECK_FALSE(dns::write_frame_prefix(p, 65536));
    CHECK_FALSE(dns::write_frame_prefix(p, 0));
    CHECK_FALSE(dns::write_frame_prefix(std::span(p).first(1), 10));
}

TEST_CASE("the query path allocates nothing") {
    const bytes msg = make_query("Db.Internal.Corp", dns::rr_type::a, edns_opts{true, 1232, true, true, 0});
    const bytes upstream =
        make_upstream(9, 0x8180, "www.example.com", dns::rr_type::a, {{dns::rr_type::a, 300, {1, 2, 3, 4}}}, {}, true);
    bytes cached = upstream;
    std::array<char, dns::name_buffer_size> buf{};
    std::array<std::byte, 1024> out{};
    dns::soa_record soa{"internal.corp", "ns1.internal.corp", "hostmaster.internal.corp"};
    size_t sink = 0;
    const size_t before = g_allocations;
    for (int i = 0; i < 10000; ++i) {
        const dns::query q = dns::parse_query(view(msg), buf);
        dns::response_spec spec;
        spec.a = two_v4;
        spec.soa = (i & 1) != 0 ? &soa : nullptr;
        sink += dns::build_response(q, spec, out).size;
        sink += dns::validate_response(view(upstream), 9, q.question).rcode;
        sink += dns::response_cache_ttl(view(upstream), 0, 3600).ttl;
        sink += dns::decrement_ttls(wview(cached), 0) ? 1 : 0;
        sink += dns::next_frame(view(msg)).needed;
    }
    const size_t after = g_allocations;
    CHECK(after == before);
    CHECK(sink > 0);
}

// --- A round trip with BIND's dig: it sends real queries to a socket here, and must accept our answers. ---
namespace {

struct dig_run {
    FILE* pipe = nullptr;
    std::string output;
};

dig_run start_dig(const std::string& args) {
    dig_run d;
    const std::string cmd = "dig " + args + " +tries=1 +time=3 2>&1";
    d.pipe = popen(cmd.c_str(), "r");
    REQUIRE(d.pipe != nullptr);
    return d;
}

std::string finish_dig(dig_run& d) {
    char chunk[4096];
    size_t n = 0;
    while ((n = std::fread(chunk, 1, sizeof chunk, d.pipe)) > 0) {
        d.output.append(chunk, n);
    }
    pclose(d.pipe);
    return d.output;
}

int bound_socket(int type, uint16_t& port) {
    const int s = socket(AF_INET, type, 0);
    REQUIRE(s >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
    return s;
}

bool wait_readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, 5000) == 1;
}

// What our server would answer: private zone internal.corp, one v4 and one v6 proxy address.
bytes answer(std::span<const std::byte> query_bytes, size_t limit_tcp) {
    std::array<char, dns::name_buffer_size> buf{};
    const dns::query q = dns::parse_query(query_bytes, buf);
    REQUIRE(q.error == dns::query_error::none);
    static constexpr std::array<std::array<uint8_t, 4>, 1> v4{{{203, 0, 113, 50}}};
    static const dns::soa_record soa{"internal.corp", "ns1.internal.corp", "hostmaster.internal.corp", 7};
    dns::response_spec spec;
    spec.ttl = 300;
    spec.ra = true;
    if (q.qname == "db.internal.corp") {
        if (q.qtype == dns::rr_type::a) {
            spec.a = v4;
        } else if (q.qtype == dns::rr_type::aaaa) {
            spec.aaaa = one_v6;
        } else {
            spec.soa = &soa;
        }
    } else {
        spec.code = dns::rcode::nxdomain;
        spec.soa = &soa;
    }
    const size_t limit = limit_tcp != 0 ? limit_tcp : dns::max_udp_response_size(q, 1232);
    bytes out(limit);
    const dns::build_result r = dns::build_response(q, spec, wview(out));
    REQUIRE(r.error == dns::build_error::none);
    out.resize(r.size);
    return out;
}

std::string dig_udp(const std::string& args) {
    uint16_t port = 0;
    const int s = bound_socket(SOCK_DGRAM, port);
    dig_run d = start_dig("@127.0.0.1 -p " + std::to_string(port) + " " + args);
    if (wait_readable(s)) {
        std::array<uint8_t, 65536> in{};
        sockaddr_in from{};
        socklen_t from_len = sizeof from;
        const ssize_t n = recvfrom(s, in.data(), in.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
        REQUIRE(n > 0);
        const bytes resp = answer(std::as_bytes(std::span(in.data(), static_cast<size_t>(n))), 0);
        REQUIRE(sendto(s, resp.data(), resp.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len) ==
                static_cast<ssize_t>(resp.size()));
    }
    close(s);
    return finish_dig(d);
}

std::string dig_tcp(const std::string& args) {
    uint16_t port = 0;
    const int l = bound_socket(SOCK_STREAM, port);
    REQUIRE(listen(l, 1) == 0);
    dig_run d = start_dig("@127.0.0.1 -p " + std::to_string(port) + " +tcp " + args);
    if (wait_readable(l)) {
        const int c = accept(l, nullptr, nullptr);
        REQUIRE(c >= 0);
        std::vector<uint8_t> stream;
        dns::frame f;
        // Read in small pieces so the framing sees partial frames.
        while (wait_readable(c)) {
            uint8_t piece[7];
            const ssize_t n = read(c, piece, sizeof piece);
            if (n <= 0) {
                break;
            }
            stream.insert(stream.end(), piece, piece + n);
            f = dns::next_frame(view(stream));
            if (f.status != dns::frame_status::need_more) {
                break;
            }
        }
        REQUIRE(f.status == dns::frame_status::complete);
        const bytes resp = answer(f.message, 65535);
        bytes framed(2);
        REQUIRE(dns::write_frame_prefix(wview(framed), resp.size()));
        framed.insert(framed.end(), resp.begin(), resp.end());
        REQUIRE(write(c, framed.data(), framed.size()) == static_cast<ssize_t>(framed.size()));
        close(c);
    }
    close(l);
    return finish_dig(d);
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

} // namespace

TEST_CASE("dig accepts our answers over UDP and TCP") {
    if (access("/usr/bin/dig", X_OK) != 0) {
        MESSAGE("dig not installed (bind9-dnsutils): skipped");
        return;
    }
    std::string out = dig_udp("Db.Internal.Corp A +padding=468 +dnssec");
    CAPTURE(out);
    CHECK(contains(out, "status: NOERROR"));
    CHECK(contains(out, "flags: qr aa rd ra;"));
    CHECK(contains(out, "Db.Internal.Corp.\t300\tIN\tA\t203.0.113.50"));
    CHECK(contains(out, "EDNS: version: 0, flags: do; udp: 1232"));
    CHECK(contains(out, "PAD: ("));
    CHECK(contains(out, "MSG SIZE  rcvd: 468"));
    CHECK_FALSE(contains(out, "arning"));

    out = dig_udp("nothere.internal.corp A +noedns");
    CAPTURE(out);
    CHECK(contains(out, "status: NXDOMAIN"));
    CHECK(contains(out, "AUTHORITY: 1"));
    CHECK(contains(out, "\ninternal.corp.\t"));
    CHECK(contains(out, "\t300\tIN\tSOA\tns1.internal.corp. hostmaster.internal.corp. 7 3600 600 86400 300"));
    CHECK_FALSE(contains(out, "OPT PSEUDOSECTION"));
    CHECK_FALSE(contains(out, "arning"));

    out = dig_tcp("db.internal.corp AAAA");
    CAPTURE(out);
    CHECK(contains(out, "status: NOERROR"));
    CHECK(contains(out, "db.internal.corp.\t300\tIN\tAAAA\t2001:db8::50"));
    CHECK(contains(out, "(TCP)"));
    CHECK_FALSE(contains(out, "arning"));

    out = dig_tcp("db.internal.corp TXT");
    CAPTURE(out);
    CHECK(contains(out, "status: NOERROR"));
    CHECK(contains(out, "ANSWER: 0, AUTHORITY: 1"));
}
