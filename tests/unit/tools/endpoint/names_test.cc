// The endpoint's DNS helpers: queries it builds parse as queries, catalog and SRV answers in the data plane's
// format are read back, suffix matching, the truncated reply for UDP, the service tunnel header.
#include "tools/endpoint/names.hh"

#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

using namespace zt;
using namespace zt::endpoint;

namespace {

struct msg_writer {
    std::vector<std::byte> b;
    void u8(uint8_t v) { b.push_back(std::byte(v)); }
    void u16(uint16_t v) {
        u8(uint8_t(v >> 8));
        u8(uint8_t(v));
    }
    void u32(uint32_t v) {
        u16(uint16_t(v >> 16));
        u16(uint16_t(v));
    }
    void name(std::string_view n) {
        while (!n.empty()) {
            auto dot = n.find('.');
            auto label = n.substr(0, dot);
            u8(uint8_t(label.size()));
            for (char c : label) {
                u8(uint8_t(c));
            }
            n = dot == std::string_view::npos ? std::string_view{} : n.substr(dot + 1);
        }
        u8(0);
    }
};

/// An answer as the data plane's catalog.cc writes it: the question, then records owned by a pointer to it.
std::vector<std::byte> answer(std::string_view qname, uint16_t qtype, uint16_t rcode,
                              const std::vector<std::string>& ptrs, const std::vector<uint16_t>& srv_ports) {
    msg_writer w;
    w.u16(0x1234);
    w.u16(uint16_t(0x8000 | 0x0400 | 0x0100 | 0x0080 | rcode));
    w.u16(1);
    w.u16(uint16_t(ptrs.size() + srv_ports.size()));
    w.u16(0);
    w.u16(0);
    w.name(qname);
    w.u16(qtype);
    w.u16(1);
    for (const auto& p : ptrs) {
        w.u16(0xc00c);
        w.u16(type_ptr);
        w.u16(1);
        w.u32(60);
        w.u16(uint16_t(p.size() + 2));
        w.name(p);
    }
    for (uint16_t port : srv_ports) {
        std::string target(qname.substr(std::string_view("_ztdns._tcp.").size()));
        w.u16(0xc00c);
        w.u16(type_srv);
        w.u16(1);
        w.u32(60);
        w.u16(uint16_t(6 + target.size() + 2));
        w.u16(0);
        w.u16(0);
        w.u16(port);
        w.name(target);
    }
    return w.b;
}

} // namespace

TEST_CASE("the queries the endpoint builds parse as one-question queries") {
    std::array<std::byte, 512> out{};
    size_t n = build_query(out, 77, "_catalog._ztdns.edge1.test", type_ptr);
    REQUIRE(n > 0);
    std::array<char, dns::name_buffer_size> nb{};
    auto q = dns::parse_query(std::span(out).first(n), std::span<char, dns::name_buffer_size>(nb));
    CHECK(q.error == dns::query_error::none);
    CHECK(q.hdr.id == 77);
    CHECK(q.hdr.rd());
    CHECK(q.qname == "_catalog._ztdns.edge1.test");
    CHECK(q.qtype == type_ptr);
    CHECK(q.opt.present);
    CHECK(q.opt.udp_payload_size == 1232);

    CHECK(build_query(out, 1, "a..b", 1) == 0);
    CHECK(build_query(out, 1, std::string(64, 'x') + ".corp", 1) == 0);
    CHECK(build_query(std::span(out).first(20), 1, "db.internal.corp", 1) == 0);
    CHECK(catalog_name("edge1.test") == "_catalog._ztdns.edge1.test");
    CHECK(srv_name("db.internal.corp") == "_ztdns._tcp.db.internal.corp");
}

TEST_CASE("a catalog answer lists the zones, sorted and unique") {
    const std::string name = "_catalog._ztdns.edge1.test";
    auto a = answer(name, type_ptr, 0, {"db.internal.corp", "cache.internal.corp", "DB.internal.corp"}, {});
    auto c = parse_catalog(a, name);
    REQUIRE(c.result == catalog_answer::kind::zones);
    CHECK(c.zones == std::vector<std::string>{"cache.internal.corp", "db.internal.corp"});
    CHECK_FALSE(c.truncated);

    SUBCASE("NOERROR with no records: no zones") {
        auto e = parse_catalog(answer(name, type_ptr, 0, {}, {}), name);
        CHECK(e.result == catalog_answer::kind::zones);
        CHECK(e.zones.empty());
    }
    SUBCASE("NXDOMAIN: none") {
        CHECK(parse_catalog(answer(name, type_ptr, 3, {}, {}), name).result == catalog_answer::kind::none);
    }
    SUBCASE("SERVFAIL or REFUSED: failed (keep what we had)") {
        CHECK(parse_catalog(answer(name, type_ptr, 2, {}, {}), name).result == catalog_answer::kind::failed);
        CHECK(parse_catalog(answer(name, type_ptr, 5, {}, {}), name).result == catalog_answer::kind::failed);
    }
    SUBCASE("records for another owner are ignored") {
        auto other = answer("_catalog._ztdns.other.test", type_ptr, 0, {"db.internal.corp"}, {});
        CHECK(parse_catalog(other, name).zones.empty());
    }
    SUBCASE("a malformed answer fails") {
        a.resize(a.size() - 3);
        CHECK(parse_catalog(a, name).result == catalog_answer::kind::failed);
    }
    SUBCASE("TC is reported") {
        a[2] |= std::byte{0x02};
        CHECK(parse_catalog(a, name).truncated);
    }
}

TEST_CASE("an SRV answer gives the service's ports") {
    const std::string name = "_ztdns._tcp.db.internal.corp";
    CHECK(parse_srv_ports(answer(name, type_srv, 0, {}, {5432}), name) == std::vector<uint16_t>{5432});
    CHECK(parse_srv_ports(answer(name, type_srv, 0, {}, {80, 443, 80}), name) == std::vector<uint16_t>{80, 443});
    CHECK(parse_srv_ports(answer(name, type_srv, 3, {}, {}), name).empty());
    CHECK(parse_srv_ports(answer(name, type_srv, 0, {}, {0}), name).empty());
}

TEST_CASE("names under a zone") {
    CHECK(under_zone("db.internal.corp", "db.internal.corp"));
    CHECK(under_zone("replica.db.internal.corp", "db.internal.corp"));
    CHECK_FALSE(under_zone("xdb.internal.corp", "db.internal.corp"));
    CHECK_FALSE(under_zone("internal.corp", "db.internal.corp"));
    CHECK_FALSE(under_zone("db.internal.corp", ""));
    CHECK(valid_zone_name("db.internal.corp"));
    CHECK(valid_zone_name("_x.a-b.c"));
    CHECK_FALSE(valid_zone_name(""));
    CHECK_FALSE(valid_zone_name("a..b"));
    CHECK_FALSE(valid_zone_name("a.b."));
    CHECK_FALSE(valid_zone_name("a b.c"));
    CHECK_FALSE(valid_zone_name(std::string(64, 'a') + ".b"));
}

TEST_CASE("a truncated reply keeps the answer's header and the question, sets TC, drops the records") {
    std::array<std::byte, 512> qb{};
    size_t n = build_query(qb, 9, "big.public.test", 16, false);
    std::array<char, dns::name_buffer_size> nb{};
    auto q = dns::parse_query(std::span(qb).first(n), std::span<char, dns::name_buffer_size>(nb));
    REQUIRE(q.error == dns::query_error::none);
    auto resp = answer("big.public.test", 16, 0, {}, {});
    resp[0] = std::byte{0};
    resp[1] = std::byte{9};
    std::array<std::byte, 512> out{};
    size_t t = build_truncated(q, resp, out);
    REQUIRE(t == dns::header_size + q.question.size());
    auto h = dns::read_header(std::span(out).first(t));
    REQUIRE(h);
    CHECK(h->id == 9);
    CHECK(h->tc());
    CHECK(h->qr());
    CHECK(h->qdcount == 1);
    CHECK(h->ancount == 0);
    CHECK(h->arcount == 0);
    CHECK(build_truncated(q, resp, std::span(out).first(13)) == 0);
}

TEST_CASE("the service tunnel header") {
    auto bytes = [](std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); };
    auto h = parse_tunnel_header(bytes("ZTDNS-TUNNEL Api.Internal.Corp c0123456789ab\nGET / HTTP/1.1\r\n"));
    REQUIRE(h.result == tunnel_header::status::ok);
    CHECK(h.name == "api.internal.corp");
    CHECK(h.client_cn == "c0123456789ab");
    CHECK(h.consumed == std::string_view("ZTDNS-TUNNEL Api.Internal.Corp c0123456789ab\n").size());
    CHECK(parse_tunnel_header(bytes("ZTDNS-TUNNEL api.internal.corp c01")).result == tunnel_header::status::need_more);
    CHECK(parse_tunnel_header(bytes("ZTDNS-TUNNEL api.internal.corp\n")).result == tunnel_header::status::bad);
    CHECK(parse_tunnel_header(bytes("HELLO api.internal.corp c1\n")).result == tunnel_header::status::bad);
    CHECK(parse_tunnel_header(bytes("ZTDNS-TUNNEL a..b c1\n")).result == tunnel_header::status::bad);
    std::string longline(600, 'x');
    CHECK(parse_tunnel_header(bytes(longline)).result == tunnel_header::status::bad);
    auto crlf = parse_tunnel_header(bytes("ZTDNS-TUNNEL a.b c1\r\n"));
    CHECK(crlf.result == tunnel_header::status::ok);
    CHECK(crlf.client_cn == "c1");
}

TEST_CASE("the parked line") {
    auto bytes = [](std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); };
    auto p = parse_parked_line(bytes("ZTDNS-PARKED 1 2\nZTDNS-TUNNEL a.b c1\n"));
    REQUIRE(p.result == parked_line::status::ok);
    CHECK(p.shard == 1);
    CHECK(p.shards == 2);
    CHECK(p.consumed == 17);
    CHECK(parse_parked_line(bytes("ZTDNS-PAR")).result == parked_line::status::need_more);
    CHECK(parse_parked_line(bytes("ZTDNS-PARKED 0 ")).result == parked_line::status::need_more);
    CHECK(parse_parked_line(bytes("ZTDNS-TUNNEL a.b c1\n")).result == parked_line::status::other);
    CHECK(parse_parked_line(bytes("")).result == parked_line::status::need_more);
    CHECK(parse_parked_line(bytes("ZTDNS-PARKED 2 2\n")).result == parked_line::status::bad);
    CHECK(parse_parked_line(bytes("ZTDNS-PARKED x 2\n")).result == parked_line::status::bad);
    CHECK(parse_parked_line(bytes("ZTDNS-PARKED 0 0\n")).result == parked_line::status::bad);
}
