// The stub's cache: answers are served with the client's id and aged TTLs until they expire; errors and
// answers without TTL are not kept; the key separates types and the flags that change an answer.
#include "tools/endpoint/cache.hh"
#include "tools/endpoint/names.hh"

#include <doctest/doctest.h>

#include <array>

using namespace zt;
using namespace zt::endpoint;

namespace {

struct parsed {
    std::array<std::byte, 512> buf{};
    std::array<char, dns::name_buffer_size> nb{};
    dns::query q;
    size_t n = 0;
    parsed(std::string_view name, uint16_t type, uint16_t id, bool edns = true) {
        n = build_query(buf, id, name, type, edns);
        q = dns::parse_query(std::span(buf).first(n), std::span<char, dns::name_buffer_size>(nb));
    }
};

std::vector<std::byte> response(const dns::query& q, dns::rcode code, uint32_t ttl) {
    std::array<uint8_t, 4> a{198, 18, 0, 10};
    dns::response_spec spec;
    spec.code = code;
    spec.ttl = ttl;
    if (code == dns::rcode::noerror) {
        spec.a = std::span(&a, 1);
    }
    std::array<std::byte, 1024> out{};
    auto r = dns::build_response(q, spec, out);
    return {out.begin(), out.begin() + r.size};
}

uint32_t first_ttl(std::span<const std::byte> msg) {
    auto recs = read_records(msg);
    REQUIRE(recs);
    REQUIRE(!recs->empty());
    return (*recs)[0].ttl;
}

} // namespace

TEST_CASE("a cached answer comes back with the new id and its TTL aged, until it expires") {
    dns_cache c;
    parsed p("www.public.test", dns::rr_type::a, 100);
    auto key = dns_cache::key_of(p.q);
    c.insert(key, response(p.q, dns::rcode::noerror, 300), 1'000);
    std::array<std::byte, 2048> out{};
    auto n = c.lookup(key, 1'000 + 120'500, 4242, out);
    REQUIRE(n);
    auto h = dns::read_header(std::span(out).first(*n));
    CHECK(h->id == 4242);
    CHECK(first_ttl(std::span(out).first(*n)) == 180);
    CHECK_FALSE(c.lookup(key, 1'000 + 300'000, 1, out));
    CHECK(c.size() == 0);
}

TEST_CASE("what is not cached") {
    dns_cache c;
    parsed p("www.public.test", dns::rr_type::a, 1);
    auto key = dns_cache::key_of(p.q);
    c.insert(key, response(p.q, dns::rcode::servfail, 300), 0);
    c.insert(key, response(p.q, dns::rcode::noerror, 0), 0);
    CHECK(c.size() == 0);
    std::array<std::byte, 2048> out{};
    CHECK_FALSE(c.lookup(key, 0, 1, out));
}

TEST_CASE("the key separates type, EDNS and name") {
    parsed a("www.public.test", dns::rr_type::a, 1), aaaa("www.public.test", dns::rr_type::aaaa, 1),
        plain("www.public.test", dns::rr_type::a, 1, false), other("other.public.test", dns::rr_type::a, 1);
    CHECK(dns_cache::key_of(a.q) != dns_cache::key_of(aaaa.q));
    CHECK(dns_cache::key_of(a.q) != dns_cache::key_of(plain.q));
    CHECK(dns_cache::key_of(a.q) != dns_cache::key_of(other.q));
    parsed again("WWW.Public.Test", dns::rr_type::a, 9);
    CHECK(dns_cache::key_of(a.q) == dns_cache::key_of(again.q));
}

TEST_CASE("the cache stays within its bound") {
    dns_cache c(8);
    for (int i = 0; i < 50; ++i) {
        parsed p("n" + std::to_string(i) + ".test", dns::rr_type::a, 1);
        c.insert(dns_cache::key_of(p.q), response(p.q, dns::rcode::noerror, 60 + uint32_t(i)), 0);
        CHECK(c.size() <= 8);
    }
    c.clear();
    CHECK(c.size() == 0);
}
