// TLS ClientHello sniffer: every result and error on every path, each stream fed as every growing prefix
// (need_more until decided, then the same answer), hellos fragmented over records of every size, TLS 1.0-1.3,
// GREASE, extension order, ECH, ALPN, limits, zero allocations, and the hellos of real openssl s_client and curl.
#include "common/proto/client_hello.hh"
#include "common/proto/http_host.hh"
#include "tests/unit/common/proto/capture.hh"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace proto = zt::proto;
using proto::host_kind;
using proto::tls_error;
using proto::tls_status;

namespace {

using bytes = std::vector<uint8_t>;

std::span<const std::byte> view(const bytes& b) {
    return std::as_bytes(std::span(b));
}

void put8(bytes& b, size_t v) {
    b.push_back(static_cast<uint8_t>(v));
}
void put16(bytes& b, size_t v) {
    put8(b, v >> 8);
    put8(b, v);
}
void put24(bytes& b, size_t v) {
    put8(b, v >> 16);
    put16(b, v);
}
void append(bytes& b, const bytes& more) {
    b.insert(b.end(), more.begin(), more.end());
}
void append(bytes& b, std::string_view more) {
    b.insert(b.end(), more.begin(), more.end());
}

struct ext {
    uint16_t type = 0;
    bytes data;
};

// server_name data: a ServerNameList of (type, name) entries.
bytes sni_list(std::initializer_list<std::pair<uint8_t, std::string>> names) {
    bytes entries;
    for (const auto& [type, name] : names) {
        put8(entries, type);
        put16(entries, name.size());
        append(entries, name);
    }
    bytes b;
    put16(b, entries.size());
    append(b, entries);
    return b;
}
ext sni(const std::string& name) {
    return {proto::tls_ext::server_name, sni_list({{0, name}})};
}
ext alpn(std::initializer_list<std::string> protocols) {
    bytes list;
    for (const auto& p : protocols) {
        put8(list, p.size());
        append(list, p);
    }
    bytes b;
    put16(b, list.size());
    append(b, list);
    return {proto::tls_ext::alpn, b};
}
ext versions(std::initializer_list<uint16_t> vs) {
    bytes b;
    put8(b, vs.size() * 2);
    for (const uint16_t v : vs) {
        put16(b, v);
    }
    return {proto::tls_ext::supported_versions, b};
}
ext opaque(uint16_t type, size_t size, uint8_t fill = 0x5a) {
    return {type, bytes(size, fill)};
}

struct hello_spec {
    uint16_t version = 0x0303;
    size_t session_id = 32;
    size_t suite_bytes = 8;
    size_t compressions = 1;
    bool extensions_block = true;
    std::vector<ext> exts;
};

bytes extensions_of(const std::vector<ext>& exts) {
    bytes b;
    for (const ext& e : exts) {
        put16(b, e.type);
        put16(b, e.data.size());
        append(b, e.data);
    }
    return b;
}

// The handshake message: type 1, uint24 length, body.
bytes hello_message(const hello_spec& s) {
    bytes body;
    put16(body, s.version);
    body.insert(body.end(), 32, 0x11);
    put8(body, s.session_id);
    body.insert(body.end(), s.session_id, 0x22);
    put16(body, s.suite_bytes);
    for (size_t i = 0; i < s.suite_bytes; ++i) {
        put8(body, i % 2 == 0 ? 0x13 : 0x01 + i / 2); // 0x1301 0x1302 ...
    }
    put8(body, s.compressions);
    body.insert(body.end(), s.compressions, 0);
    if (s.extensions_block) {
        const bytes e = extensions_of(s.exts);
        put16(body, e.size());
        append(body, e);
    }
    bytes msg;
    put8(msg, 1);
    put24(msg, body.size());
    append(msg, body);
    return msg;
}

// The message in handshake records of at most `fragment` bytes each.
bytes records(const bytes& msg, size_t fragment = 16384, uint16_t record_version = 0x0301) {
    bytes out;
    for (size_t at = 0; at < msg.size(); at += fragment) {
        const size_t n = std::min(fragment, msg.size() - at);
        put8(out, 22);
        put16(out, record_version);
        put16(out, n);
        out.insert(out.end(), msg.begin() + static_cast<long>(at), msg.begin() + static_cast<long>(at + n));
    }
    return out;
}

// What a current browser or curl sends, GREASE included.
std::vector<ext> typical_extensions(const std::string& name) {
    bytes groups;
    put16(groups, 8);
    for (const uint16_t g : {0x4a4a, 0x001d, 0x0017, 0x0018}) {
        put16(groups, g);
    }
    bytes key_share;
    put16(key_share, 2 + 2 + 1 + 2 + 2 + 32);
    put16(key_share, 0x4a4a);
    put16(key_share, 1);
    put8(key_share, 0);
    put16(key_share, 0x001d);
    put16(key_share, 32);
    key_share.insert(key_share.end(), 32, 0x33);
    return {
        opaque(0x0a0a, 0),
        sni(name),
        {23, {}},
        {65281, {0}},
        {10, groups},
        {11, {1, 0}},
        {35, {}},
        alpn({"h2", "http/1.1"}),
        {5, {1, 0, 0, 0, 0}},
        opaque(13, 18),
        opaque(18, 0),
        {51, key_share},
        {45, {1, 1}},
        versions({0x3a3a, 0x0304, 0x0303}),
        opaque(27, 3),
        opaque(0x1a1a, 1, 0),
        opaque(21, 200, 0), // padding
    };
}

bytes typical_hello(const std::string& name = "db.internal.corp") {
    hello_spec s;
    s.exts = typical_extensions(name);
    return records(hello_message(s));
}

struct outcome {
    tls_status status = tls_status::need_more;
    tls_error error = tls_error::none;
    host_kind kind = host_kind::none;
    std::string sni;
    size_t hello_end = 0;
    uint16_t legacy_version = 0;
    bool tls13 = false;
    bool ech = false;
    bool has_alpn = false;
    std::vector<std::string> alpn;

    bool operator==(const outcome&) const = default;
};

outcome sniff(const bytes& in, const proto::client_hello_limits& limits = {}) {
    std::array<char, proto::name_buffer_size> name{};
    const proto::client_hello_result r = proto::sniff_client_hello(view(in), name, limits);
    outcome o;
    o.status = r.status;
    o.error = r.error;
    o.kind = r.sni.kind;
    o.sni = std::string(r.sni.text);
    o.hello_end = r.hello_end;
    o.legacy_version = r.legacy_version;
    o.tls13 = r.offers_tls13;
    o.ech = r.ech;
    o.has_alpn = r.has_alpn;
    for (proto::alpn_entry e = proto::next_alpn_protocol(r.alpn, 0); !e.protocol.empty();
         e = proto::next_alpn_protocol(r.alpn, e.next)) {
        o.alpn.emplace_back(e.protocol);
    }
    if (r.status == tls_status::found) {
        CHECK(r.sni.text.data() == name.data());
        CHECK(r.hello_end <= in.size());
    } else {
        CHECK(r.sni.kind == host_kind::none);
    }
    if (r.status != tls_status::found && r.status != tls_status::no_sni) {
        CHECK(r.hello_end == 0);
        CHECK(r.alpn.empty());
        CHECK(!r.has_alpn);
    }
    return o;
}

// Every prefix: need_more until the answer is decided, then the whole input's answer. Returns the answer and the
// prefix length that first gave it.
struct decided {
    outcome result;
    size_t at = 0;
};

decided sniff_every_prefix(const bytes& in, const proto::client_hello_limits& limits = {}) {
    const outcome full = sniff(in, limits);
    size_t at = in.size() + 1;
    for (size_t k = 0; k <= in.size(); ++k) {
        std::array<char, proto::name_buffer_size> name{};
        const bytes prefix(in.begin(), in.begin() + static_cast<long>(k));
        const size_t needed = proto::sniff_client_hello(view(prefix), name, limits).needed;
        const outcome o = sniff(prefix, limits);
        if (o.status == tls_status::need_more) {
            CHECK(needed > k);
            if (full.status == tls_status::found || full.status == tls_status::no_sni) {
                CHECK(needed <= full.hello_end);
            }
            CHECK_MESSAGE(at > in.size(), "need_more after the answer was decided, prefix ", k);
            continue;
        }
        if (at > in.size()) {
            at = k;
        }
        CHECK_MESSAGE(o == full, "prefix ", k, " answers differently from the whole input");
    }
    return {full, at};
}

void malformed(const bytes& in, tls_error why) {
    const decided d = sniff_every_prefix(in);
    CHECK(d.result.status == tls_status::malformed);
    CHECK(d.result.error == why);
}

// The handshake bytes of a record stream (test side reassembly, to re-fragment real hellos).
bytes handshake_of(const bytes& stream) {
    bytes msg;
    for (size_t at = 0; at + 5 <= stream.size() && stream[at] == 22;) {
        const size_t n = (size_t{stream[at + 3]} << 8) | stream[at + 4];
        msg.insert(msg.end(), stream.begin() + static_cast<long>(at + 5),
                   stream.begin() + static_cast<long>(std::min(stream.size(), at + 5 + n)));
        at += 5 + n;
    }
    if (msg.size() >= 4) {
        msg.resize(std::min(msg.size(), 4 + ((size_t{msg[1]} << 16) | (size_t{msg[2]} << 8) | msg[3])));
    }
    return msg;
}

// The same answer whatever the record fragmentation, and need_more on every prefix of each.
void same_answer_in_any_fragments(const bytes& stream, const outcome& want) {
    const bytes msg = handshake_of(stream);
    const proto::client_hello_limits many{proto::default_max_client_hello_size, 100000};
    for (size_t fragment = 1; fragment <= msg.size(); ++fragment) {
        const bytes split = records(msg, fragment);
        outcome o = sniff(split, many);
        CHECK(o.status == want.status);
        CHECK(o.sni == want.sni);
        CHECK(o.tls13 == want.tls13);
        CHECK(o.hello_end == split.size());
        if (fragment == 1 || fragment == 3 || fragment == 64) {
            const decided d = sniff_every_prefix(split, many);
            CHECK(d.at == split.size());
        }
    }
}

} // namespace

TEST_CASE("tls: SNI of a typical TLS 1.3 hello, decided at its last byte") {
    const bytes in = typical_hello("DB.Internal.Corp.");
    const decided d = sniff_every_prefix(in);
    CHECK(d.at == in.size());
    const outcome& o = d.result;
    CHECK(o.status == tls_status::found);
    CHECK(o.error == tls_error::none);
    CHECK(o.sni == "db.internal.corp");
    CHECK(o.kind == host_kind::dns_name);
    CHECK(o.hello_end == in.size());
    CHECK(o.legacy_version == 0x0303);
    CHECK(o.tls13);
    CHECK(!o.ech);
    CHECK(o.has_alpn);
    CHECK(o.alpn == std::vector<std::string>{"h2", "http/1.1"});
}

TEST_CASE("tls: waiting for `needed` bytes takes a call per record") {
    for (const size_t fragment : {16384, 300, 100, 7}) {
        const bytes in = records(handshake_of(typical_hello()), fragment);
        const size_t record_count = (handshake_of(in).size() + fragment - 1) / fragment;
        std::array<char, proto::name_buffer_size> name{};
        size_t have = 1;
        size_t calls = 0;
        proto::client_hello_result r;
        for (;;) {
            ++calls;
            r = proto::sniff_client_hello(view(in).first(have), name, {16384, 1000});
            if (r.status != tls_status::need_more) {
                break;
            }
            REQUIRE(r.needed > have);
            have = std::min(r.needed, in.size());
        }
        CHECK(r.status == tls_status::found);
        CHECK(have == in.size());
        // The first byte, then each record's header and the rest of it (the first record's also for the length).
        CHECK(calls <= 2 * record_count + 3);
        CHECK(r.needed == 0);
    }
}

TEST_CASE("tls: fragmented over records of every size, and over reads") {
    same_answer_in_any_fragments(typical_hello(), sniff(typical_hello()));
    // Record version 0x0303 and 0x0300 are TLS too.
    hello_spec s;
    s.exts = {sni("a.corp")};
    CHECK(sniff(records(hello_message(s), 16384, 0x0303)).sni == "a.corp");
    CHECK(sniff(records(hello_message(s), 16384, 0x0300)).sni == "a.corp");
    // Mixed record versions within one hello.
    bytes mixed = records(hello_message(s), 20);
    mixed[2 + 25] = 0x03;
    CHECK(sniff(mixed).sni == "a.corp");
    // ALPN straddling a record boundary is reported as present, without a view.
    const bytes msg = hello_message(hello_spec{0x0303, 0, 2, 1, true, {alpn({"h2"}), sni("a.corp")}});
    const outcome split = sniff(records(msg, 4 + 2 + 32 + 1 + 2 + 2 + 1 + 2 + 4 + 3));
    CHECK(split.status == tls_status::found);
    CHECK(split.has_alpn);
    CHECK(split.alpn.empty());
}

TEST_CASE("tls: TLS 1.0-1.2 hellos, extensions in any order, GREASE, ECH, literal SNI") {
    hello_spec s;
    s.version = 0x0301;
    s.session_id = 0;
    s.suite_bytes = 2;
    s.exts = {sni("legacy.corp")};
    outcome o = sniff(records(hello_message(s)));
    CHECK(o.status == tls_status::found);
    CHECK(o.legacy_version == 0x0301);
    CHECK(!o.tls13);
    CHECK(!o.has_alpn);

    std::vector<ext> exts = typical_extensions("web.internal.corp");
    for (size_t rotation = 0; rotation < exts.size(); ++rotation) {
        std::rotate(exts.begin(), exts.begin() + 1, exts.end());
        hello_spec r;
        r.exts = exts;
        const outcome x = sniff(records(hello_message(r)));
        CHECK(x.status == tls_status::found);
        CHECK(x.sni == "web.internal.corp");
        CHECK(x.tls13);
        CHECK(x.alpn.size() == 2);
    }
    // GREASE extension types, with and without data, and the same GREASE type twice is not our business.
    hello_spec g;
    g.exts = {opaque(0x2a2a, 0), opaque(0xfafa, 7), sni("a.corp"), opaque(0x2a2a, 1), versions({0xdada, 0x0304})};
    o = sniff(records(hello_message(g)));
    CHECK(o.sni == "a.corp");
    CHECK(o.tls13);

    // ECH: the outer SNI is the public name; the flag says the real one is encrypted.
    hello_spec e;
    e.exts = typical_extensions("public.example.com");
    e.exts.insert(e.exts.begin() + 3, opaque(proto::tls_ext::encrypted_client_hello, 250));
    o = sniff(records(hello_message(e)));
    CHECK(o.status == tls_status::found);
    CHECK(o.sni == "public.example.com");
    CHECK(o.ech);

    // Against RFC 6066, but seen: literal addresses.
    hello_spec l;
    l.exts = {sni("10.10.10.50")};
    o = sniff(records(hello_message(l)));
    CHECK(o.status == tls_status::found);
    CHECK(o.kind == host_kind::ipv4);
    l.exts = {sni("2001:DB8::1")};
    o = sniff(records(hello_message(l)));
    CHECK(o.kind == host_kind::ipv6);
    CHECK(o.sni == "2001:db8::1");

    // Longest names.
    std::string name253;
    while (name253.size() < 253) {
        name253 += name253.empty() ? "a" : ".a";
    }
    l.exts = {sni(name253)};
    CHECK(sniff(records(hello_message(l))).sni == name253);
    l.exts = {sni(name253 + ".")};
    CHECK(sniff(records(hello_message(l))).sni == name253);
}

TEST_CASE("tls: hellos without a name") {
    hello_spec s;
    s.extensions_block = false; // SSL 3.0 / TLS 1.0 style: no extensions at all
    decided d = sniff_every_prefix(records(hello_message(s)));
    CHECK(d.result.status == tls_status::no_sni);
    CHECK(d.result.hello_end == d.at);
    s.extensions_block = true; // an empty block
    CHECK(sniff(records(hello_message(s))).status == tls_status::no_sni);
    s.exts = typical_extensions("x.corp");
    s.exts.erase(s.exts.begin() + 1);
    const bytes in = records(hello_message(s));
    d = sniff_every_prefix(in);
    CHECK(d.result.status == tls_status::no_sni);
    CHECK(d.result.tls13);
    CHECK(d.result.alpn.size() == 2);
    CHECK(d.at == in.size());
    // A server_name list with only other name types.
    s.exts = {{proto::tls_ext::server_name, sni_list({{7, "opaque"}})}};
    CHECK(sniff(records(hello_message(s))).status == tls_status::no_sni);
    s.exts = {{proto::tls_ext::server_name, sni_list({{7, "opaque"}, {0, "b.corp"}, {9, "x"}})}};
    CHECK(sniff(records(hello_message(s))).sni == "b.corp");
}

TEST_CASE("tls: bytes after the hello are not looked at") {
    hello_spec s;
    s.exts = {sni("a.corp")};
    const bytes msg = hello_message(s);
    bytes in = records(msg);
    const size_t end = in.size();
    // TLS 1.3 middlebox-compatibility ChangeCipherSpec, then early data.
    append(in, bytes{20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xde, 0xad});
    outcome o = sniff(in);
    CHECK(o.status == tls_status::found);
    CHECK(o.hello_end == end);
    // More handshake bytes after the hello in its own record.
    bytes tail = msg;
    append(tail, bytes{4, 0, 0, 0});
    o = sniff(records(tail));
    CHECK(o.status == tls_status::found);
    CHECK(o.hello_end == 5 + msg.size());
    // And garbage after it.
    append(in, bytes(100, 0xff));
    CHECK(sniff(in).status == tls_status::found);
}

TEST_CASE("tls: other protocols are recognised from the first two bytes") {
    const auto first = [](std::string_view s) {
        const bytes b(s.begin(), s.end());
        const decided d = sniff_every_prefix(b);
        CHECK(d.result.status == tls_status::not_tls);
        return d.at;
    };
    CHECK(first("GET / HTTP/1.1\r\n") == 1);
    CHECK(first(std::string_view("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8)) == 1); // PostgreSQL SSLRequest
    CHECK(first("SSH-2.0-OpenSSH_9.2p1\r\n") == 1);
    CHECK(first("*1\r\n$4\r\nPING\r\n") == 1);
    CHECK(first("\x80\x2e\x01\x03\x01") == 1); // SSLv2-compatible hello: no SNI possible, not TLS for us
    CHECK(first("\x17\x03\x03\x00\x10") == 1); // application data
    CHECK(first("\x16\x02\x00\x00\x10") == 2); // handshake type byte, but not version 3.x
    CHECK(first("\x16\xfe\xfd\x00\x10") == 2); // DTLS
    CHECK(sniff(bytes{}).status == tls_status::need_more);
    CHECK(sniff(bytes{22}).status == tls_status::need_more);
    CHECK(sniff(bytes{22, 3}).status == tls_status::need_more);
    CHECK(sniff(bytes{22, 3, 1, 0, 200, 1}).status == tls_status::need_more);
}

TEST_CASE("tls: malformed records and hellos") {
    hello_spec ok;
    ok.exts = {sni("a.corp"), alpn({"h2"})};
    const bytes msg = hello_message(ok);

    // Records: version above 3.4, empty, over 2^14, another content type or version mid-hello.
    malformed(bytes{22, 3, 5, 0, 10}, tls_error::bad_record);
    CHECK(sniff(bytes{22, 3, 5}).status == tls_status::malformed);
    malformed(bytes{22, 3, 1, 0, 0, 1}, tls_error::bad_record);
    malformed(bytes{22, 3, 1, 0x40, 0x01, 1}, tls_error::bad_record);
    for (const uint8_t type : {20, 21, 23, 24}) {
        bytes in = records(msg, 30);
        in[35] = type;
        malformed(in, tls_error::bad_record);
    }
    bytes in = records(msg, 30);
    in[36] = 2;
    malformed(in, tls_error::bad_record);
    // Another handshake message first.
    in = records(msg);
    in[5] = 2;
    CHECK(sniff_every_prefix(in).at == 6);
    malformed(in, tls_error::not_client_hello);

    const auto bad_hello = [](const hello_spec& s, tls_error why) { malformed(records(hello_message(s)), why); };
    hello_spec s = ok;
    s.version = 0x0203;
    bad_hello(s, tls_error::bad_hello);
    s = ok;
    s.session_id = 33;
    bad_hello(s, tls_error::bad_hello);
    s = ok;
    s.suite_bytes = 0;
    bad_hello(s, tls_error::bad_hello);
    s = ok;
    s.suite_bytes = 7;
    bad_hello(s, tls_error::bad_hello);
    s = ok;
    s.compressions = 0;
    bad_hello(s, tls_error::bad_hello);
    // A handshake length that ends inside the fixed fields, or inside the extensions' length.
    for (const size_t cut : {1, 2, 20, 34, 35, 40}) {
        bytes m(msg.begin(), msg.begin() + 4 + cut);
        m[1] = 0;
        m[2] = 0;
        m[3] = static_cast<uint8_t>(cut);
        malformed(records(m), tls_error::bad_hello);
    }
    {
        hello_spec none = ok;
        none.extensions_block = false;
        bytes m = hello_message(none);
        m.push_back(0); // one byte where the two-byte extensions length would be
        m[3] = static_cast<uint8_t>(m[3] + 1);
        malformed(records(m), tls_error::bad_extensions);
    }

    // Extensions: block length off by one either way, an extension past the end, trailing bytes.
    for (const int delta : {-1, 1}) {
        bytes m = msg;
        const size_t at = 4 + 2 + 32 + 1 + 32 + 2 + 8 + 1 + 1;
        const size_t len = (size_t{m[at]} << 8) | m[at + 1];
        m[at + 1] = static_cast<uint8_t>(len + static_cast<size_t>(delta));
        malformed(records(m), tls_error::bad_extensions);
    }
    s = ok;
    s.exts = {sni("a.corp"), opaque(99, 4)};
    bytes m = hello_message(s);
    m[m.size() - 5] = 5; // the last extension claims one byte more than there is
    malformed(records(m), tls_error::bad_extensions);

    // Duplicates of the extensions we read.
    for (const ext& e : {sni("a.corp"), alpn({"h2"}), versions({0x0304}), opaque(0xfe0d, 4)}) {
        s = ok;
        s.exts = {e, opaque(77, 1), e};
        bad_hello(s, tls_error::duplicate_extension);
    }

    // server_name contents.
    const auto bad_sni = [&](bytes data) {
        hello_spec x;
        x.exts = {{proto::tls_ext::server_name, std::move(data)}};
        bad_hello(x, tls_error::bad_sni);
    };
    bad_sni({});
    bad_sni({0});
    bad_sni({0, 0});
    bad_sni({0, 2, 0, 0});
    bad_sni({0, 5, 0, 0, 1, 'a'});       // list longer than the extension
    bad_sni({0, 4, 0, 0, 2, 'a'});       // name longer than the list
    bad_sni({0, 4, 0, 0, 1, 'a', 0, 0}); // list shorter than the extension
    bad_sni({0, 3, 0, 0, 0});            // empty name
    bad_sni({0, 5, 0, 0, 1, 'a', 0});    // truncated second entry
    bad_sni(sni_list({{0, "a.corp"}, {0, "b.corp"}}));
    bad_sni(sni_list({{0, "a.corp"}, {0, "a.corp"}}));
    for (const std::string& name :
         std::vector<std::string>{"a b.corp", "a..corp", ".", "a.corp..", "foo.123", "1.2.3.04", "[::1]",
                                  std::string("a\0b", 3), std::string(64, 'a') + ".corp"}) {
        bad_sni(sni_list({{0, name}}));
    }
    std::string long_name(254, 'a');
    for (size_t i = 63; i < long_name.size(); i += 64) {
        long_name[i] = '.';
    }
    bad_sni(sni_list({{0, long_name}}));
    bad_sni(sni_list({{0, long_name + "."}}));

    // ALPN and supported_versions contents.
    const auto bad_ext = [&](uint16_t type, bytes data, tls_error why) {
        hello_spec x;
        x.exts = {sni("a.corp"), {type, std::move(data)}};
        bad_hello(x, why);
    };
    bad_ext(proto::tls_ext::alpn, {}, tls_error::bad_alpn);
    bad_ext(proto::tls_ext::alpn, {0, 0}, tls_error::bad_alpn);
    bad_ext(proto::tls_ext::alpn, {0, 1, 0}, tls_error::bad_alpn);
    bad_ext(proto::tls_ext::alpn, {0, 2, 0, 'x'}, tls_error::bad_alpn);
    bad_ext(proto::tls_ext::alpn, {0, 3, 3, 'h', '2'}, tls_error::bad_alpn);
    bad_ext(proto::tls_ext::alpn, {0, 3, 2, 'h', '2', 0}, tls_error::bad_alpn);
    bad_ext(proto::tls_ext::supported_versions, {}, tls_error::bad_supported_versions);
    bad_ext(proto::tls_ext::supported_versions, {0}, tls_error::bad_supported_versions);
    bad_ext(proto::tls_ext::supported_versions, {1, 3}, tls_error::bad_supported_versions);
    bad_ext(proto::tls_ext::supported_versions, {2, 3, 4, 0}, tls_error::bad_supported_versions);
    bad_ext(proto::tls_ext::supported_versions, {4, 3, 4}, tls_error::bad_supported_versions);
}

TEST_CASE("tls: limits") {
    // A handshake length over the limit is refused from the header, before the body arrives.
    bytes in{22, 3, 1, 0x40, 0x00, 1, 0x00, 0x40, 0x01};
    decided d = sniff_every_prefix(in);
    CHECK(d.result.status == tls_status::too_long);
    CHECK(d.result.error == tls_error::hello_too_long);
    CHECK(d.at == 9);
    in[8] = 0x00; // exactly 16384: allowed, and waits
    CHECK(sniff(in).status == tls_status::need_more);

    const bytes hello = typical_hello();
    const size_t body = hello.size() - 9;
    CHECK(sniff(hello, {body, 16}).status == tls_status::found);
    CHECK(sniff(hello, {body - 1, 16}).status == tls_status::too_long);

    // A hello of the largest size, in the two records it needs, is found.
    hello_spec big;
    big.exts = {sni("big.corp"), opaque(21, 1)};
    const size_t base = hello_message(big).size() - 4;
    big.exts[1] = opaque(21, 1 + proto::default_max_client_hello_size - base);
    const bytes big_msg = hello_message(big);
    CHECK(big_msg.size() == 4 + proto::default_max_client_hello_size);
    CHECK(sniff(records(big_msg)).sni == "big.corp");

    // Records: the default allows 16, a fragmented small hello in 17 is too long.
    hello_spec s;
    s.exts = {sni("a.corp")};
    const bytes msg = hello_message(s);
    const size_t fragment = (msg.size() + 15) / 16;
    CHECK(sniff(records(msg, fragment)).status == tls_status::found);
    const size_t smaller = msg.size() / 17;
    REQUIRE((msg.size() + smaller - 1) / smaller > 16);
    const outcome o = sniff(records(msg, smaller));
    CHECK(o.status == tls_status::too_long);
    CHECK(o.error == tls_error::too_many_records);
    CHECK(sniff(records(msg, 1), {16384, 4}).status == tls_status::too_long);
}

TEST_CASE("tls: sniffing allocates nothing") {
    const bytes in = typical_hello();
    const bytes frag = records(handshake_of(in), 50);
    std::array<char, proto::name_buffer_size> name{};
    const size_t before = proto::test::allocation_count();
    size_t found = 0;
    for (int i = 0; i < 1000; ++i) {
        for (size_t k = 0; k <= in.size(); k += 13) {
            found += proto::sniff_client_hello(view(in).first(k), name).status == tls_status::found;
        }
        found += proto::sniff_client_hello(view(in), name).status == tls_status::found;
        found += proto::sniff_client_hello(view(frag), name).status == tls_status::found;
    }
    CHECK(proto::test::allocation_count() == before);
    CHECK(found >= 2000);
}

namespace {

bool hello_decided(std::span<const std::byte> b) {
    std::array<char, proto::name_buffer_size> name{};
    return proto::sniff_client_hello(b, name).status != tls_status::need_more;
}

outcome sniff_real(const std::string& command) {
    const std::vector<uint8_t> got = proto::test::capture_client_bytes(command, hello_decided);
    REQUIRE_MESSAGE(!got.empty(), "no bytes from: ", command);
    const bytes in(got.begin(), got.end());
    INFO(command, ": ", in.size(), " bytes");
    const decided d = sniff_every_prefix(in);
    CHECK(d.at == d.result.hello_end);
    same_answer_in_any_fragments(in, d.result);
    // Nor is it HTTP.
    std::array<char, proto::name_buffer_size> name{};
    CHECK(proto::sniff_http_host(view(in), name).status == proto::http_status::not_http);
    return d.result;
}

} // namespace

TEST_CASE("tls: real openssl s_client and curl hellos") {
    outcome o = sniff_real("openssl s_client -servername db.internal.corp -connect 127.0.0.1:PORT");
    CHECK(o.status == tls_status::found);
    CHECK(o.sni == "db.internal.corp");
    CHECK(o.tls13);

    o = sniff_real("openssl s_client -tls1_2 -servername DB.internal.corp -connect 127.0.0.1:PORT");
    CHECK(o.status == tls_status::found);
    CHECK(o.sni == "db.internal.corp");
    CHECK(!o.tls13);

    o = sniff_real("openssl s_client -noservername -alpn postgresql -connect 127.0.0.1:PORT");
    CHECK(o.status == tls_status::no_sni);
    CHECK(o.alpn == std::vector<std::string>{"postgresql"});

    o = sniff_real("curl -sk --resolve web.internal.corp:PORT:127.0.0.1 https://web.internal.corp:PORT/");
    CHECK(o.status == tls_status::found);
    CHECK(o.sni == "web.internal.corp");
    CHECK(o.tls13);
    CHECK(o.alpn == std::vector<std::string>{"h2", "http/1.1"});

    // curl sends no SNI for an address.
    o = sniff_real("curl -sk https://127.0.0.1:PORT/");
    CHECK(o.status == tls_status::no_sni);
}
