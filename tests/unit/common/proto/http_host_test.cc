// HTTP/1.x Host sniffer and the shared host rules: every result and error on every path, each input fed as every
// growing prefix (need_more until decided, then the same answer), limits, case, ports, IP literals, absolute- and
// authority-form, duplicates, zero allocations, and the requests of a real curl.
#include "common/proto/client_hello.hh"
#include "common/proto/http_host.hh"
#include "tests/unit/common/proto/capture.hh"

#include <doctest/doctest.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace {
size_t g_allocations = 0;
}

// Counts every allocation of this test binary, so a test can prove the sniffers allocate nothing.
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

size_t zt::proto::test::allocation_count() noexcept {
    return g_allocations;
}

namespace proto = zt::proto;
using proto::host_kind;
using proto::http_error;
using proto::http_status;
using proto::request_form;

namespace {

std::span<const std::byte> view(std::string_view s) {
    return std::as_bytes(std::span(s.data(), s.size()));
}

// A result with the host copied out, so it can be compared after the name buffer is reused.
struct outcome {
    http_status status = http_status::need_more;
    http_error error = http_error::none;
    request_form form = request_form::origin;
    host_kind kind = host_kind::none;
    std::string host;
    uint16_t port = 0;
    size_t header_end = 0;
    uint8_t minor = 0;

    bool operator==(const outcome&) const = default;
};

outcome sniff(std::string_view in, const proto::http_limits& limits = {}) {
    std::array<char, proto::name_buffer_size> name{};
    const proto::http_result r = proto::sniff_http_host(view(in), name, limits);
    outcome o{r.status, r.error, r.form, r.host.kind, std::string(r.host.text), r.port, r.header_end, r.version_minor};
    if (r.status != http_status::found) {
        CHECK(r.host.kind == host_kind::none);
        CHECK(r.host.text.empty());
    } else {
        CHECK(r.host.text.data() == name.data());
    }
    return o;
}

// Feeds every prefix: need_more until the answer is decided, then the full input's answer for every longer prefix.
// Returns the full answer and the prefix length at which it was first given.
struct decided {
    outcome result;
    size_t at = 0;
};

decided sniff_every_prefix(std::string_view in, const proto::http_limits& limits = {}) {
    const outcome full = sniff(in, limits);
    size_t at = in.size() + 1;
    for (size_t k = 0; k <= in.size(); ++k) {
        const outcome o = sniff(in.substr(0, k), limits);
        if (o.status == http_status::need_more) {
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

outcome found(std::string_view in) {
    const decided d = sniff_every_prefix(in);
    CHECK(d.result.status == http_status::found);
    CHECK(d.result.error == http_error::none);
    // Found only with the whole header block, and then at once.
    CHECK(d.at == d.result.header_end);
    return d.result;
}

void malformed(std::string_view in, http_error why) {
    const decided d = sniff_every_prefix(in);
    CHECK_MESSAGE(d.result.status == http_status::malformed, in);
    CHECK_MESSAGE(d.result.error == why, in);
}

size_t not_http(std::string_view in, http_error why) {
    const decided d = sniff_every_prefix(in);
    CHECK_MESSAGE(d.result.status == http_status::not_http, in);
    CHECK_MESSAGE(d.result.error == why, in);
    return d.at;
}

proto::host_name norm(std::string_view text, std::array<char, proto::name_buffer_size>& buf) {
    return proto::normalize_host(text, buf);
}

} // namespace

TEST_CASE("host rules: DNS names as zones.json has them, IP literals, lower case, one trailing dot") {
    std::array<char, proto::name_buffer_size> b{};
    CHECK(norm("DB.Internal.Corp", b).text == "db.internal.corp");
    CHECK(norm("DB.Internal.Corp", b).kind == host_kind::dns_name);
    CHECK(norm("db.internal.corp.", b).text == "db.internal.corp");
    CHECK(norm("my_svc-1.internal.corp", b).kind == host_kind::dns_name);
    CHECK(norm("localhost", b).kind == host_kind::dns_name);
    CHECK(norm("-lead.corp", b).kind == host_kind::dns_name); // config accepts it, so must we
    CHECK(norm("", b).kind == host_kind::none);
    CHECK(norm(".", b).kind == host_kind::none);
    CHECK(norm("a..b", b).kind == host_kind::none);
    CHECK(norm(".a", b).kind == host_kind::none);
    CHECK(norm("a..", b).kind == host_kind::none);
    CHECK(norm("a b", b).kind == host_kind::none);
    CHECK(norm("a%2eb", b).kind == host_kind::none);
    CHECK(norm("user@host", b).kind == host_kind::none);
    CHECK(norm(std::string_view("a\0b", 3), b).kind == host_kind::none);
    CHECK(norm("caf\xc3\xa9.corp", b).kind == host_kind::none); // IDNs arrive as punycode
    CHECK(norm("xn--caf-dma.corp", b).kind == host_kind::dns_name);

    const std::string label63(63, 'a');
    CHECK(norm(label63 + ".corp", b).kind == host_kind::dns_name);
    CHECK(norm(label63 + "a.corp", b).kind == host_kind::none);
    std::string name253;
    while (name253.size() < 253) {
        name253 += name253.empty() ? "a" : ".a";
    }
    CHECK(name253.size() == 253);
    CHECK(norm(name253, b).kind == host_kind::dns_name);
    CHECK(norm(name253 + ".", b).text == name253);
    CHECK(norm(name253 + "b", b).kind == host_kind::none);

    CHECK(norm("10.1.2.3", b).kind == host_kind::ipv4);
    CHECK(norm("255.255.255.255", b).kind == host_kind::ipv4);
    CHECK(norm("0.0.0.0", b).kind == host_kind::ipv4);
    CHECK(norm("10.1.2.3.", b).text == "10.1.2.3");
    CHECK(norm("256.1.2.3", b).kind == host_kind::none);
    CHECK(norm("10.1.2.03", b).kind == host_kind::none); // octal in inet_aton: ambiguous
    CHECK(norm("10.1.2", b).kind == host_kind::none);
    CHECK(norm("10.1.2.3.4", b).kind == host_kind::none);
    CHECK(norm("1234", b).kind == host_kind::none);
    CHECK(norm("foo.123", b).kind == host_kind::none);
    CHECK(norm("0x7f.1", b).kind == host_kind::none);
    CHECK(norm("123.foo", b).kind == host_kind::dns_name);

    CHECK(norm("::1", b).kind == host_kind::ipv6);
    CHECK(norm("::", b).kind == host_kind::ipv6);
    CHECK(norm("2001:DB8::1", b).text == "2001:db8::1");
    CHECK(norm("1:2:3:4:5:6:7:8", b).kind == host_kind::ipv6);
    CHECK(norm("1::", b).kind == host_kind::ipv6);
    CHECK(norm("::ffff:192.0.2.1", b).kind == host_kind::ipv6);
    CHECK(norm("1:2:3:4:5:6:192.0.2.1", b).kind == host_kind::ipv6);
    CHECK(norm("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", b).kind == host_kind::ipv6);
    CHECK(norm("1:2:3:4:5:6:7:8:9", b).kind == host_kind::none);
    CHECK(norm("1:2:3:4:5:6:7", b).kind == host_kind::none);
    CHECK(norm("1::2::3", b).kind == host_kind::none);
    CHECK(norm(":::", b).kind == host_kind::none);
    CHECK(norm(":1", b).kind == host_kind::none);
    CHECK(norm("1:", b).kind == host_kind::none);
    CHECK(norm("12345::", b).kind == host_kind::none);
    CHECK(norm("fe80::1%eth0", b).kind == host_kind::none);
    CHECK(norm("::1.2.3", b).kind == host_kind::none);
    CHECK(norm("1:2:3:4:5:6:7:1.2.3.4", b).kind == host_kind::none);
    CHECK(norm("g::1", b).kind == host_kind::none);

    // In place, as the ClientHello sniffer uses it.
    std::memcpy(b.data(), "WWW.Example.COM.", 16);
    const proto::host_name h = proto::normalize_host(std::string_view(b.data(), 16), b);
    CHECK(h.text == "www.example.com");
    CHECK(h.text.data() == b.data());
}

TEST_CASE("http: Host of an origin-form request, every line ending, case, ports and IP literals") {
    outcome o = found("GET / HTTP/1.1\r\nHost: db.internal.corp\r\n\r\n");
    CHECK(o.host == "db.internal.corp");
    CHECK(o.kind == host_kind::dns_name);
    CHECK(o.port == 0);
    CHECK(o.form == request_form::origin);
    CHECK(o.minor == 1);
    CHECK(o.header_end == 42);

    CHECK(found("GET / HTTP/1.1\nHost: db.internal.corp\n\n").header_end == 39); // bare LF (RFC 9112 §2.2)
    CHECK(found("GET / HTTP/1.1\r\nHost: a.corp\n\r\n").host == "a.corp");
    CHECK(found("GET / HTTP/1.1\r\nhOsT: DB.Internal.CORP.\r\n\r\n").host == "db.internal.corp");
    CHECK(found("GET / HTTP/1.1\r\nHost:db.internal.corp\r\n\r\n").host == "db.internal.corp");
    CHECK(found("GET / HTTP/1.1\r\nHost: \t db.internal.corp \t \r\n\r\n").host == "db.internal.corp");

    o = found("GET /x?y=1 HTTP/1.1\r\nUser-Agent: t\r\nHost: web.internal.corp:8443\r\nAccept: */*\r\n\r\n");
    CHECK(o.host == "web.internal.corp");
    CHECK(o.port == 8443);
    o = found("GET / HTTP/1.1\r\nHost: web.internal.corp:\r\n\r\n"); // port = *DIGIT
    CHECK(o.host == "web.internal.corp");
    CHECK(o.port == 0);
    CHECK(found("GET / HTTP/1.1\r\nHost: a.corp:65535\r\n\r\n").port == 65535);
    CHECK(found("GET / HTTP/1.1\r\nHost: a.corp:00080\r\n\r\n").port == 80);

    o = found("GET / HTTP/1.1\r\nHost: [2001:DB8::1]:8080\r\n\r\n");
    CHECK(o.host == "2001:db8::1");
    CHECK(o.kind == host_kind::ipv6);
    CHECK(o.port == 8080);
    o = found("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n");
    CHECK(o.host == "::1");
    CHECK(o.port == 0);
    o = found("GET / HTTP/1.1\r\nHost: 10.10.10.50:5432\r\n\r\n");
    CHECK(o.host == "10.10.10.50");
    CHECK(o.kind == host_kind::ipv4);
    CHECK(o.port == 5432);

    // Methods are tokens, case-sensitive; any registered or extension method.
    for (const char* m : {"POST", "PUT", "DELETE", "HEAD", "PATCH", "PROPFIND", "M-SEARCH", "X_CUSTOM!", "get",
                          "UPDATEREDIRECTREF", "A2345678901234567890"}) {
        CHECK(found(std::string(m) + " /p HTTP/1.1\r\nHost: a.corp\r\n\r\n").host == "a.corp");
    }
    // Up to two empty lines before the request line are ignored.
    CHECK(found("\r\n\nGET / HTTP/1.1\r\nHost: a.corp\r\n\r\n").header_end == 35);
    // Any HTTP/1.x; the Host rules of 1.1 apply to 1.2+.
    CHECK(found("GET / HTTP/1.9\r\nHost: a.corp\r\n\r\n").minor == 9);
    // Raw UTF-8 in a path, as some clients send it.
    CHECK(found("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a.corp\r\n\r\n").host == "a.corp");
    // A header value may hold any VCHAR/obs-text.
    CHECK(found("GET / HTTP/1.1\r\nX: \xff\x80 \"q\"\r\nHost: a.corp\r\n\r\n").host == "a.corp");
}

TEST_CASE("http: only the first header block counts; bytes after it are not looked at") {
    const std::string req = "POST /u HTTP/1.1\r\nHost: a.corp\r\nContent-Length: 30\r\n\r\n";
    const std::string body = "Host: b.corp\r\n\r\n\x00\x01\x16\x03 rest";
    const outcome whole = sniff(req + body);
    CHECK(whole.status == http_status::found);
    CHECK(whole.host == "a.corp");
    CHECK(whole.header_end == req.size());
    const outcome two = sniff(req + "GET / HTTP/1.1\r\nHost: b.corp\r\n\r\n");
    CHECK(two.host == "a.corp");
}

TEST_CASE("http: absolute-form wins over Host; CONNECT's authority-form; OPTIONS *") {
    outcome o = found("GET http://Web.Internal.Corp:8080/x?y HTTP/1.1\r\nHost: other.corp\r\n\r\n");
    CHECK(o.host == "web.internal.corp");
    CHECK(o.port == 8080);
    CHECK(o.form == request_form::absolute);
    CHECK(found("GET HTTPS://web.internal.corp HTTP/1.1\r\nHost: x.corp\r\n\r\n").host == "web.internal.corp");
    CHECK(found("GET http://web.internal.corp?q HTTP/1.1\r\nHost: x.corp\r\n\r\n").host == "web.internal.corp");
    CHECK(found("GET http://web.internal.corp#f HTTP/1.1\r\nHost: x.corp\r\n\r\n").host == "web.internal.corp");
    CHECK(found("GET http://[fe80::1]:81/ HTTP/1.1\r\nHost: x.corp\r\n\r\n").host == "fe80::1");
    // HTTP/1.0 may omit Host: the target still names the host.
    o = found("GET http://web.internal.corp/ HTTP/1.0\r\n\r\n");
    CHECK(o.host == "web.internal.corp");
    CHECK(o.minor == 0);

    o = found("CONNECT db.internal.corp:5432 HTTP/1.1\r\nHost: db.internal.corp:5432\r\n\r\n");
    CHECK(o.host == "db.internal.corp");
    CHECK(o.port == 5432);
    CHECK(o.form == request_form::authority);
    CHECK(found("CONNECT [::1]:443 HTTP/1.1\r\nHost: x.corp\r\n\r\n").host == "::1");

    o = found("OPTIONS * HTTP/1.1\r\nHost: a.corp\r\n\r\n");
    CHECK(o.form == request_form::asterisk);
    CHECK(o.host == "a.corp");
}

TEST_CASE("http: HTTP/1.0 without Host has no name") {
    const decided d = sniff_every_prefix("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n");
    CHECK(d.result.status == http_status::no_host);
    CHECK(d.result.header_end == 31);
    CHECK(d.at == 31);
    CHECK(sniff("OPTIONS * HTTP/1.0\r\n\r\n").status == http_status::no_host);
    CHECK(sniff("GET / HTTP/1.0\r\nHost: a.corp\r\n\r\n").host == "a.corp");
}

TEST_CASE("http: other protocols are recognised from their first bytes") {
    // TLS (an inner ClientHello), PostgreSQL startup and SSLRequest, MQTT CONNECT: the first byte decides.
    CHECK(not_http("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", http_error::bad_method) == 1);
    CHECK(not_http(std::string_view("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8), http_error::bad_method) == 1);
    CHECK(not_http(std::string_view("\x10\x12\x00\x04MQTT", 8), http_error::bad_method) == 1);
    // SSH: the banner line, at its first impossible byte (a token too long for a method, or CR instead of SP).
    CHECK(not_http("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", http_error::bad_method) == 21);
    CHECK(not_http("SSH-2.0-Go\r\n", http_error::bad_method) == 11);
    // Redis RESP and inline commands.
    CHECK(not_http("*1\r\n$4\r\nPING\r\n", http_error::bad_method) == 3);
    CHECK(not_http("PING\r\n", http_error::bad_method) == 5);
    CHECK(not_http("SET foo bar\r\n", http_error::bad_target) == 5);
    // SMTP-like and HTTP/0.9.
    CHECK(not_http("EHLO client.example\r\n", http_error::bad_target) == 6);
    CHECK(not_http("GET /\r\n", http_error::bad_target) == 6);
    // HTTP/2 prior knowledge and other versions.
    CHECK(not_http("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", http_error::http2_preface) == 12);
    CHECK(not_http("GET / HTTP/2.0\r\n\r\n", http_error::bad_version) == 12);
    CHECK(not_http("GET / HTTP/1.x\r\n\r\n", http_error::bad_version) == 14);
    CHECK(not_http("GET / http/1.1\r\n\r\n", http_error::bad_version) == 7);
    // Targets that are neither origin-form nor http(s) absolute-form.
    CHECK(not_http("GET ftp://x/ HTTP/1.1\r\n", http_error::bad_target) == 5);
    CHECK(not_http("GET httpx://x/ HTTP/1.1\r\n", http_error::bad_target) == 9);
    CHECK(not_http("GET http:/x HTTP/1.1\r\n", http_error::bad_target) == 11);
    CHECK(not_http("GET  / HTTP/1.1\r\n", http_error::bad_target) == 5);
    CHECK(not_http("OPTIONS *x HTTP/1.1\r\n", http_error::bad_target) == 10);
    CHECK(not_http("CONNECT  HTTP/1.1\r\n", http_error::bad_target) == 9);
    CHECK(not_http("GET /a\x01 HTTP/1.1\r\n", http_error::bad_target) == 7);
    // Methods: not a token, empty, too long; three empty lines first.
    CHECK(not_http(" GET / HTTP/1.1\r\n", http_error::bad_method) == 1);
    CHECK(not_http("G(T / HTTP/1.1\r\n", http_error::bad_method) == 2);
    CHECK(not_http("A23456789012345678901 / HTTP/1.1\r\n", http_error::bad_method) == 21);
    CHECK(not_http("\r\n\r\n\r\nGET / HTTP/1.1\r\n", http_error::bad_method) == 5);
    CHECK(not_http("\rGET / HTTP/1.1\r\n", http_error::bad_method) == 2);
    // Nothing impossible yet: wait.
    CHECK(sniff("").status == http_status::need_more);
    CHECK(sniff("GET / HTTP/1.1").status == http_status::need_more);
    CHECK(sniff("SSH-2.0-Go").status == http_status::need_more);
}

TEST_CASE("http: malformed requests") {
    // Host: duplicates (any case, same value or not), missing in 1.1, bad values.
    malformed("GET / HTTP/1.1\r\nHost: a.corp\r\nHost: a.corp\r\n\r\n", http_error::duplicate_host);
    malformed("GET / HTTP/1.1\r\nHost: a.corp\r\nX: y\r\nHOST: b.corp\r\n\r\n", http_error::duplicate_host);
    malformed("GET / HTTP/1.0\r\nHost: a.corp\r\nhost: a.corp\r\n\r\n", http_error::duplicate_host);
    malformed("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", http_error::missing_host);
    malformed("GET http://a.corp/ HTTP/1.1\r\n\r\n", http_error::missing_host);
    malformed("CONNECT a.corp:443 HTTP/1.1\r\n\r\n", http_error::missing_host);
    malformed("GET / HTTP/1.1\r\nHost-Name: a.corp\r\n\r\n", http_error::missing_host);
    constexpr const char* bad_hosts[] = {"",
                                         " ",
                                         "a.corp, b.corp",
                                         "a b.corp",
                                         "a.corp:x",
                                         "a.corp:65536",
                                         "a.corp:123456",
                                         "a.corp:80:80",
                                         "user@a.corp",
                                         "a%2ecorp",
                                         "::1",
                                         "[::1",
                                         "[::1]x",
                                         "[::1]:x",
                                         "[a.corp]",
                                         "[1.2.3.4]",
                                         "[fe80::1%25eth0]",
                                         "[v1.x]",
                                         "[]",
                                         "[::1.]",
                                         "1.2.3.04",
                                         "foo.123",
                                         "a..corp",
                                         "a.corp..",
                                         "\"a.corp\""};
    for (const char* bad : bad_hosts) {
        malformed(std::string("GET / HTTP/1.1\r\nHost: ") + bad + "\r\n\r\n", http_error::bad_host);
    }
    malformed("GET / HTTP/1.1\r\nHost: " + std::string(64, 'a') + ".corp\r\n\r\n", http_error::bad_host);
    // Absolute-form: the target's authority must be valid, and so must a Host that it overrides.
    malformed("GET http:///x HTTP/1.1\r\nHost: a.corp\r\n\r\n", http_error::bad_target_authority);
    malformed("GET http://user@a.corp/ HTTP/1.1\r\nHost: a.corp\r\n\r\n", http_error::bad_target_authority);
    malformed("GET http://a.corp:99999/ HTTP/1.1\r\nHost: a.corp\r\n\r\n", http_error::bad_target_authority);
    malformed("GET http://a.corp/ HTTP/1.1\r\nHost: bad host\r\n\r\n", http_error::bad_host);
    malformed("CONNECT a.corp HTTP/1.1\r\nHost: a.corp\r\n\r\n", http_error::bad_target_authority);
    malformed("CONNECT a.corp: HTTP/1.1\r\nHost: a.corp\r\n\r\n", http_error::bad_target_authority);
    malformed("CONNECT /x HTTP/1.1\r\nHost: a.corp\r\n\r\n", http_error::bad_target_authority);
    malformed("GET * HTTP/1.1\r\nHost: a.corp\r\n\r\n", http_error::asterisk_not_options);
    // Line structure: obs-fold, whitespace after the start line, bare CR, field syntax, CTLs.
    malformed("GET / HTTP/1.1\r\nHost: a.corp\r\n b.corp\r\n\r\n", http_error::obs_fold);
    malformed("GET / HTTP/1.1\r\nX: 1\r\n\tmore\r\nHost: a.corp\r\n\r\n", http_error::obs_fold);
    malformed("GET / HTTP/1.1\r\n Host: a.corp\r\n\r\n", http_error::obs_fold);
    malformed("GET / HTTP/1.1\rHost: a.corp\r\n\r\n", http_error::bad_line_end);
    malformed("GET / HTTP/1.1 \r\nHost: a.corp\r\n\r\n", http_error::bad_line_end);
    malformed("GET / HTTP/1.10\r\nHost: a.corp\r\n\r\n", http_error::bad_line_end);
    malformed("GET / HTTP/1.1\r\nHost: a.corp\rX: y\r\n\r\n", http_error::bad_line_end);
    malformed("GET / HTTP/1.1\r\nHost: a.corp\r\n\r\r\n", http_error::bad_line_end);
    malformed("GET / HTTP/1.1\r\nHost : a.corp\r\n\r\n", http_error::bad_field_line);
    malformed("GET / HTTP/1.1\r\nHost\r\n\r\n", http_error::bad_field_line);
    malformed("GET / HTTP/1.1\r\n: a.corp\r\n\r\n", http_error::bad_field_line);
    malformed("GET / HTTP/1.1\r\nX(y): 1\r\nHost: a.corp\r\n\r\n", http_error::bad_field_line);
    malformed(std::string("GET / HTTP/1.1\r\nHost: a.corp\x00\r\n\r\n", 33), http_error::bad_field_line);
    malformed("GET / HTTP/1.1\r\nX: a\x01z\r\nHost: a.corp\r\n\r\n", http_error::bad_field_line);
    malformed("GET / HTTP/1.1\r\nX: a\x7fz\r\nHost: a.corp\r\n\r\n", http_error::bad_field_line);
    // Decided at the first bad byte, before the block ends.
    CHECK(sniff("GET / HTTP/1.1\r\nHost: a\r\n b").status == http_status::malformed);
    CHECK(sniff("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n").status == http_status::malformed);
    CHECK(sniff("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r").status == http_status::need_more);
}

TEST_CASE("http: every byte value at every position of a field value") {
    // The value scan reads 8 bytes at a time: each byte must be judged alike wherever it falls in a word.
    for (unsigned b = 0; b < 256; ++b) {
        for (size_t at = 0; at < 17; ++at) {
            std::string value(17, 'v');
            value[at] = static_cast<char>(b);
            const outcome o = sniff("GET / HTTP/1.1\r\nX-Any: " + value + "\r\nHost: a.corp\r\n\r\n");
            const bool allowed = b == '\t' || b == ' ' || (b >= 0x21 && b != 0x7f);
            if (allowed) {
                CHECK(o.status == http_status::found);
            } else if (b == '\r') {
                CHECK(o.error == http_error::bad_line_end);
            } else if (b == '\n') {
                // Ends the line early: the rest, "vvv...", is a field line without a colon, or, when nothing
                // is left of the value, the "\r\n" after it is the empty line that ends the block.
                CHECK(o.error == (at == 16 ? http_error::missing_host : http_error::bad_field_line));
            } else {
                CHECK(o.error == http_error::bad_field_line);
            }
        }
    }
}

TEST_CASE("http: the header-block limit") {
    std::string req = "GET / HTTP/1.1\r\nHost: a.corp\r\n";
    while (req.size() < 9000) {
        req += "X-Filler: " + std::string(80, 'x') + "\r\n";
    }
    req += "\r\n";
    // Under 8 KiB of it: need_more; at 8 KiB with no end: too_long, whatever follows.
    CHECK(sniff(std::string_view(req).substr(0, proto::default_max_header_bytes - 1)).status == http_status::need_more);
    CHECK(sniff(std::string_view(req).substr(0, proto::default_max_header_bytes)).status == http_status::too_long);
    CHECK(sniff(req).status == http_status::too_long);
    CHECK(sniff(req, {req.size()}).status == http_status::found);
    CHECK(sniff(req, {req.size() - 1}).status == http_status::too_long);

    // A block exactly at the limit is found; one byte more is too long.
    const std::string small = "GET / HTTP/1.1\r\nHost: a.corp\r\n\r\n";
    for (size_t limit = 0; limit < small.size() + 3; ++limit) {
        const outcome o = sniff(small + "extra bytes", {limit});
        CHECK(o.status == (limit >= small.size() ? http_status::found : http_status::too_long));
        if (limit >= 1) {
            // A prefix shorter than the limit still waits.
            CHECK(sniff(std::string_view(small).substr(0, std::min(limit, small.size()) - 1), {limit}).status ==
                  http_status::need_more);
        }
    }
    // Early decisions win over the limit only if they come first.
    CHECK(sniff("\x16\x03\x01", {1}).status == http_status::not_http);
    CHECK(sniff("GET / HTTP/1.1\r\n", {4}).status == http_status::too_long);
}

TEST_CASE("http: the sniffers tell each other's protocol apart at byte 0") {
    std::array<char, proto::name_buffer_size> name{};
    const std::string http = "GET / HTTP/1.1\r\nHost: a.corp\r\n\r\n";
    CHECK(proto::sniff_client_hello(view(http).first(1), name).status == proto::tls_status::not_tls);
    CHECK(proto::sniff_http_host(view("\x16"), name).status == http_status::not_http);
}

TEST_CASE("http: sniffing allocates nothing") {
    const std::string req = "GET http://web.internal.corp/x HTTP/1.1\r\nHost: web.internal.corp\r\nUser-Agent: t\r\n"
                            "Accept: */*\r\n\r\n";
    std::array<char, proto::name_buffer_size> name{};
    const size_t before = proto::test::allocation_count();
    size_t found_count = 0;
    for (int i = 0; i < 1000; ++i) {
        for (size_t k = 0; k <= req.size(); k += 7) {
            found_count += proto::sniff_http_host(view(req).first(k), name).status == http_status::found;
        }
        found_count += proto::sniff_http_host(view(req), name).status == http_status::found;
    }
    CHECK(proto::test::allocation_count() == before);
    CHECK(found_count >= 1000);
}

namespace {

bool header_complete(std::span<const std::byte> b) {
    const std::string_view s(reinterpret_cast<const char*>(b.data()), b.size());
    return s.find("\r\n\r\n") != std::string_view::npos;
}

outcome sniff_curl(const std::string& args) {
    const std::vector<uint8_t> got = proto::test::capture_client_bytes("curl -s " + args, header_complete);
    REQUIRE_MESSAGE(!got.empty(), "curl sent nothing: ", args);
    const std::string s(got.begin(), got.end());
    INFO("curl ", args, " sent: ", s);
    const decided d = sniff_every_prefix(s);
    CHECK(d.at == d.result.header_end);
    CHECK(d.result.header_end == s.size());
    return d.result;
}

} // namespace

TEST_CASE("http: real curl requests") {
    outcome o = sniff_curl("http://127.0.0.1:PORT/index.html");
    CHECK(o.status == http_status::found);
    CHECK(o.host == "127.0.0.1");
    CHECK(o.kind == host_kind::ipv4);
    CHECK(o.port != 0);

    o = sniff_curl("--resolve web.internal.corp:PORT:127.0.0.1 http://Web.Internal.Corp:PORT/");
    CHECK(o.status == http_status::found);
    CHECK(o.host == "web.internal.corp");

    o = sniff_curl("--connect-to '[2001:db8::7]:8080:127.0.0.1:PORT' 'http://[2001:db8::7]:8080/'");
    CHECK(o.status == http_status::found);
    CHECK(o.host == "2001:db8::7");
    CHECK(o.kind == host_kind::ipv6);
    CHECK(o.port == 8080);

    // curl through an HTTP proxy: absolute-form, then a CONNECT tunnel.
    o = sniff_curl("-x http://127.0.0.1:PORT http://web.internal.corp/x");
    CHECK(o.status == http_status::found);
    CHECK(o.form == request_form::absolute);
    CHECK(o.host == "web.internal.corp");
    o = sniff_curl("-p -x http://127.0.0.1:PORT http://db.internal.corp:5432/");
    CHECK(o.status == http_status::found);
    CHECK(o.form == request_form::authority);
    CHECK(o.host == "db.internal.corp");
    CHECK(o.port == 5432);

    o = sniff_curl("--http1.0 -H 'Host:' http://127.0.0.1:PORT/");
    CHECK(o.status == http_status::no_host);
}

TEST_CASE("names of results for logs and counters") {
    CHECK(proto::to_string(http_status::found) == "found");
    CHECK(proto::to_string(http_error::duplicate_host) == "duplicate_host");
    CHECK(proto::to_string(request_form::authority) == "authority");
    CHECK(proto::to_string(host_kind::ipv6) == "ipv6");
    CHECK(proto::to_string(proto::tls_status::no_sni) == "no_sni");
    CHECK(proto::to_string(proto::tls_error::too_many_records) == "too_many_records");
    for (int v = 0; v <= static_cast<int>(http_error::asterisk_not_options); ++v) {
        CHECK(proto::to_string(static_cast<http_error>(v)) != "unknown");
    }
    for (int v = 0; v <= static_cast<int>(proto::tls_error::too_many_records); ++v) {
        CHECK(proto::to_string(static_cast<proto::tls_error>(v)) != "unknown");
    }
    CHECK(proto::to_string(static_cast<http_status>(99)) == "unknown");
}
