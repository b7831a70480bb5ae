// The route table reader: a compiled sample config answers every lookup right
// (nested zones, case, trailing dot, deep labels, misses, ACLs, services,
// endpoints), and open() refuses what is not a table.
#include "common/table/reader.hh"
#include "tests/unit/common/table/test_tables.hh"

#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <cstring>
#include <map>
#include <string>

using namespace zt::table;
using namespace zt::table::test;

namespace {

struct fixture {
    std::vector<std::byte> blob = compile_ok(sample_config(), 42);
    table t;
    fixture() {
        auto r = open(blob);
        INFO(to_string(r.error), " ", r.reason, " at ", r.offset);
        REQUIRE(r.ok());
        t = r.view;
    }
    uint32_t zone(const char* name) const {
        for (uint32_t z = 0; z < t.zone_count(); ++z) {
            if (t.zone_name(z) == name) {
                return z;
            }
        }
        FAIL("no zone ", name);
        return none;
    }
    uint32_t ep(const char* cn) const {
        uint32_t id = t.find_endpoint(cn);
        REQUIRE(id != none);
        return id;
    }
    std::string ipv4(std::span<const uint8_t> a) const {
        char buf[INET6_ADDRSTRLEN];
        REQUIRE(inet_ntop(a.size() == 4 ? AF_INET : AF_INET6, a.data(), buf, sizeof buf) != nullptr);
        return buf;
    }
};

} // namespace

TEST_CASE_FIXTURE(fixture, "header fields and counts") {
    CHECK(t.generation() == 42);
    CHECK(t.bytes().size() == blob.size());
    CHECK(t.zone_count() == 4);
    CHECK(t.service_count() == 2);
    CHECK(t.endpoint_count() == 5);
    CHECK(t.rrset_count() == 6); // internal: 3, db: 2, example.org: 1 ("empty" has no records)
}

TEST_CASE_FIXTURE(fixture, "exact owner names give zone and record set") {
    uint32_t internal = zone("internal.corp"), db = zone("db.internal.corp");
    auto m = t.find("db.internal.corp");
    REQUIRE(m.found());
    CHECK(m.zone == db);
    REQUIRE(m.rrset == t.zone_apex(db));
    auto recs = t.records(m.rrset);
    REQUIRE(recs.size() == 2);
    CHECK(recs[0].type == zt::table::format::type_a);
    CHECK(ipv4(address(recs[0])) == "203.0.113.50");
    CHECK(recs[1].type == zt::table::format::type_aaaa);
    CHECK(ipv4(address(recs[1])) == "2001:db8::50");

    m = t.find("replica.db.internal.corp");
    CHECK(m.zone == db);
    REQUIRE(m.rrset != none);
    CHECK(t.rrset_owner(m.rrset) == "replica.db.internal.corp");
    CHECK(t.rrset_zone(m.rrset) == db);
    CHECK(ipv4(address(t.records(m.rrset)[0])) == "203.0.113.51");

    m = t.find("internal.corp");
    CHECK(m.zone == internal);
    CHECK(t.rrset_owner(m.rrset) == "internal.corp");
    m = t.find("wiki.internal.corp");
    CHECK(m.zone == internal);
    CHECK(ipv4(address(t.records(m.rrset)[0])) == "203.0.113.11");
    m = t.find("a.b.c.deep.internal.corp");
    CHECK(m.zone == internal);
    CHECK(t.rrset_owner(m.rrset) == "a.b.c.deep.internal.corp");
}

TEST_CASE_FIXTURE(fixture, "case and trailing dot do not matter") {
    uint32_t db = zone("db.internal.corp");
    for (const char* n : {"DB.INTERNAL.CORP", "Db.Internal.Corp.", "db.internal.corp.", "REPLICA.db.internal.CORP."}) {
        auto m = t.find(n);
        CHECK_MESSAGE(m.zone == db, n);
        CHECK_MESSAGE(m.rrset != none, n);
    }
}

TEST_CASE_FIXTURE(fixture, "names under a zone without records: longest suffix wins") {
    uint32_t internal = zone("internal.corp"), db = zone("db.internal.corp"), api = zone("api.internal.corp");
    struct want {
        const char* name;
        uint32_t zone;
    };
    for (auto w : {want{"nope.db.internal.corp", db}, want{"x.replica.db.internal.corp", db},
                   want{"a.b.c.d.e.f.g.h.i.j.db.internal.corp", db}, want{"other.internal.corp", internal},
                   want{"deep.internal.corp", internal}, want{"c.deep.internal.corp", internal},
                   want{"z.a.b.c.deep.internal.corp", internal}, want{"api.internal.corp", api},
                   want{"v1.api.internal.corp", api}, want{"sub.empty.example.org", zone("example.org")},
                   want{"empty.example.org", zone("example.org")}}) {
        auto m = t.find(w.name);
        CHECK_MESSAGE(m.zone == w.zone, w.name);
        CHECK_MESSAGE(m.rrset == none, w.name);
    }
}

TEST_CASE_FIXTURE(fixture, "misses and malformed names") {
    std::string label63(63, 'a'), label64(64, 'a');
    std::string long_name;
    while (long_name.size() < 250) {
        long_name += "abcdefgh.";
    }
    long_name += "internal.corp"; // over 253
    for (const std::string& n : std::vector<std::string>{
             "", ".", "corp", "internal.corpx", "xinternal.corp", "www.example.com", "com.", "a..internal.corp",
             ".internal.corp", "internal..corp", "internal.corp..", " internal.corp", label64 + ".internal.corp",
             long_name, std::string("db.internal.corp\0", 17)}) {
        CHECK_MESSAGE(!t.find(n).found(), n);
    }
    CHECK(t.find(label63 + ".internal.corp").found());
}

TEST_CASE_FIXTURE(fixture, "ACLs: sorted ids, revoked endpoints left out") {
    uint32_t internal = zone("internal.corp"), db = zone("db.internal.corp"), api = zone("api.internal.corp"),
             other = zone("example.org");
    CHECK(t.allows(db, ep(cn_laptop)));
    CHECK(t.allows(db, ep(cn_db)));
    CHECK_FALSE(t.allows(db, ep(cn_phone))); // revoked
    CHECK_FALSE(t.allows(db, ep(cn_admin)));
    CHECK(t.allows(internal, ep(cn_admin)));
    CHECK(t.allows(internal, ep(cn_laptop)));
    CHECK_FALSE(t.allows(internal, ep(cn_db)));
    CHECK(t.allows(api, ep(cn_admin)));
    CHECK_FALSE(t.allows(api, ep(cn_laptop)));
    CHECK(t.zone_acl(other).empty());
    CHECK_FALSE(t.allows(other, ep(cn_laptop)));
    CHECK(t.zone_acl(internal).size() == 2); // the duplicate is gone
    CHECK_FALSE(t.allows(db, none));
    CHECK_FALSE(t.allows(none, ep(cn_laptop)));
    for (uint32_t z = 0; z < t.zone_count(); ++z) {
        auto acl = t.zone_acl(z);
        for (size_t i = 1; i < acl.size(); ++i) {
            CHECK(acl[i - 1].endpoint < acl[i].endpoint);
        }
    }
}

TEST_CASE_FIXTURE(fixture, "zone -> service -> backends") {
    uint32_t db = zone("db.internal.corp"), api = zone("api.internal.corp");
    auto s = t.service(t.zone_service(db));
    CHECK(s.cn == cn_db);
    CHECK(s.name == "PostgreSQL Production");
    REQUIRE(s.backends.size() == 1);
    CHECK(s.backends[0].family == zt::table::format::family_ipv4);
    CHECK(ipv4(address(s.backends[0])) == "10.10.10.50");
    CHECK(s.backends[0].port == 5432);
    CHECK(t.string(s.backends[0].host) == "10.10.10.50");
    CHECK(s.connect_timeout_ms == 3000);
    CHECK(s.flags == 0);

    s = t.service(t.zone_service(api));
    CHECK(s.cn == cn_api);
    REQUIRE(s.backends.size() == 3);
    CHECK(s.backends[1].family == zt::table::format::family_ipv6);
    CHECK(ipv4(address(s.backends[1])) == "2001:db8::40");
    CHECK(s.backends[1].port == 8443);
    CHECK(s.total_weight == 4);
    CHECK(s.connect_timeout_ms == 1500);
    CHECK(s.flags == zt::table::format::service_health_check);
    CHECK(t.zone_service(zone("example.org")) == none);
    CHECK(t.service(none).backends.empty());

    // Weighted pick: 3:1, the drained (weight 0) backend never.
    std::map<uint16_t, int> hits;
    int drained = 0;
    for (uint32_t r = 0; r < 4000; ++r) {
        const auto* b = t.pick_backend(t.zone_service(api), r);
        REQUIRE(b != nullptr);
        drained += b == &s.backends[2];
        ++hits[b->port];
    }
    CHECK(drained == 0);
    CHECK(hits[443] == 3000);
    CHECK(hits[8443] == 1000);
}

TEST_CASE_FIXTURE(fixture, "endpoint registry: CN -> id, kind, revoked, not_after") {
    auto v = t.endpoint(ep(cn_phone));
    CHECK(v.found());
    CHECK(v.cn == cn_phone);
    CHECK(v.name == "lost phone");
    CHECK(v.revoked);
    CHECK(v.kind == zt::table::format::kind_client);
    CHECK(v.serial == "0a1b2c3d");
    v = t.endpoint(ep(cn_db));
    CHECK(v.kind == zt::table::format::kind_service);
    CHECK_FALSE(v.revoked);
    CHECK(t.endpoint(ep(cn_admin)).not_after == 1'700'000'000);
    CHECK(t.find_endpoint("C00000000001") == none); // CNs are case-sensitive
    CHECK(t.find_endpoint("c0000000000") == none);
    CHECK(t.find_endpoint("") == none);
    CHECK_FALSE(t.endpoint(none).found());
}

TEST_CASE("an empty config and a default table answer misses") {
    zt::config::config c;
    auto blob = compile_ok(c, 1);
    auto r = open(blob);
    REQUIRE(r.ok());
    CHECK_FALSE(r.view.find("anything.corp").found());
    CHECK(r.view.find_endpoint("c1") == none);
    table empty;
    CHECK_FALSE(empty.find("x.corp").found());
    CHECK(empty.find_endpoint("c1") == none);
    CHECK(empty.zone_name(0).empty());
    CHECK(empty.records(0).empty());
    exercise(empty); // ids out of range everywhere: must not crash
}

TEST_CASE("deep names: 127 labels") {
    zt::config::config c;
    zt::config::zone z;
    z.name = std::string("a"); // not = "a": GCC 12 -Wrestrict false positive under ASan
    // "b.b. ... b.c": 126 labels, + "a" = 127 labels, 253 bytes. (Built in
    // place: GCC 12 under ASan warns falsely on += in a loop.)
    std::string label(251, '.');
    for (size_t i = 0; i < label.size(); i += 2) {
        label[i] = 'b';
    }
    label.back() = 'c';
    z.records = {{label, {a("192.0.2.9")}}};
    c.zones = {z};
    auto blob = compile_ok(c, 1);
    auto r = open(blob);
    REQUIRE(r.ok());
    std::string owner = label + ".a";
    REQUIRE(owner.size() == 253);
    auto m = r.view.find(owner);
    CHECK(m.zone == 0);
    CHECK(m.rrset != none);
    CHECK(r.view.find(owner.substr(2)).rrset == none);
    CHECK(r.view.find(owner.substr(2)).zone == 0);
    CHECK_FALSE(r.view.find("x." + owner).found()); // 255 bytes: not a name
}

TEST_CASE("open() refuses what is not a table") {
    auto blob = compile_ok(small_config(), 3);
    auto with = [&](auto&& change) {
        auto b = blob;
        change(b);
        return open(b).error;
    };
    CHECK(open(std::span(blob).first(100)).error == open_error::too_small);
    CHECK(open(std::span(blob).first(blob.size() - 8)).error == open_error::bad_size);
    CHECK(with([](auto& b) { b[0] = std::byte{'X'}; }) == open_error::bad_magic);
    CHECK(with([](auto& b) { b[16] = std::byte{2}; }) == open_error::bad_version);
    CHECK(with([](auto& b) { b[b.size() - 1] ^= std::byte{1}; }) == open_error::bad_checksum);
    CHECK(with([](auto& b) { b.push_back(std::byte{0}); }) == open_error::bad_size);
    // Misaligned in memory.
    std::vector<std::byte> shifted(blob.size() + 1);
    std::memcpy(shifted.data() + 1, blob.data(), blob.size());
    CHECK(open(std::span(shifted).subspan(1)).error == open_error::misaligned);
    CHECK(open({}).error == open_error::too_small);
    CHECK(std::string(to_string(open_error::bad_index)) == "bad_index");
}

TEST_CASE("a newer minor version may append bytes; an older reader ignores them") {
    auto blob = compile_ok(small_config(), 3);
    auto* h = reinterpret_cast<zt::table::format::header*>(blob.data());
    h->minor = zt::table::format::minor_version + 1;
    blob.resize(blob.size() + 16, std::byte{0x5a});
    h = reinterpret_cast<zt::table::format::header*>(blob.data());
    h->total_size = blob.size();
    h->checksum = zt::table::format::checksum(blob);
    auto r = open(blob);
    CHECK(r.ok());
    h->minor = zt::table::format::minor_version;
    h->checksum = zt::table::format::checksum(blob);
    CHECK(open(blob).error == open_error::bad_layout);
}

TEST_CASE("xxh64 is XXH64") {
    CHECK(zt::table::format::xxh64({}) == 0xef46db3751d8e999ull);
    const char abc[] = "abc";
    CHECK(zt::table::format::xxh64(std::as_bytes(std::span(abc, 3))) == 0x44bc2cf5ad770999ull);
}
