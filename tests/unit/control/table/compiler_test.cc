// The route table compiler: errors name file and key; host names resolve (or
// fail with the resolver's reason); nested zones may not hide records; output
// is deterministic and validates; large configs keep short probe sequences.
#include "control/table/compiler.hh"

#include "common/table/reader.hh"
#include "tests/unit/common/table/test_tables.hh"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

using namespace zt;
using namespace zt::table::test;

namespace {

std::string error_of(const config::config& c, const control::compile_options& o = {}) {
    auto r = control::compile(c, 1, o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.blob.empty());
    return r.error->str();
}

control::compile_options fake_dns() {
    control::compile_options o;
    o.resolve = [](const std::string& host) {
        control::resolved_address r;
        if (host == "db.example") {
            r.error = "Name or service not known";
        } else if (host == "pg.backend.lan") {
            r.family = table::format::family_ipv4;
            r.addr = {10, 9, 8, 7};
        } else if (host == "v6.backend.lan") {
            r.family = table::format::family_ipv6;
            r.addr = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9};
        } else {
            r.error = "unexpected lookup of " + host;
        }
        return r;
    };
    return o;
}

} // namespace

TEST_CASE("a host that does not resolve names file and key") {
    auto c = sample_config();
    c.routes[0].backends[0].host = "db.example";
    CHECK(error_of(c, fake_dns()) ==
          "routes.json: .s1234abcd5678.host: cannot resolve \"db.example\": Name or service not known");
    c = sample_config();
    c.routes[1].backends[2].host = "db.example";
    CHECK(error_of(c, fake_dns()) ==
          "routes.json: .s5678efgh9012.backends[2].host: cannot resolve \"db.example\": Name or service not known");
}

TEST_CASE("host names resolve; literals never reach the resolver") {
    auto c = sample_config();
    c.routes[0].backends = {{"pg.backend.lan", 5432, 1}, {"v6.backend.lan", 5432, 1}, {"[2001:db8::7]", 5432, 1}};
    auto r = control::compile(c, 1, fake_dns());
    REQUIRE(r.ok());
    auto t = table::open(r.blob).view;
    auto s = t.service(t.zone_service(t.find("db.internal.corp").zone));
    REQUIRE(s.backends.size() == 3);
    CHECK(s.backends[0].family == table::format::family_ipv4);
    CHECK(std::memcmp(s.backends[0].addr, "\x0a\x09\x08\x07", 4) == 0);
    CHECK(s.backends[1].family == table::format::family_ipv6);
    CHECK(s.backends[1].addr[15] == 9);
    CHECK(s.backends[2].family == table::format::family_ipv6);
    CHECK(s.backends[2].addr[15] == 7);
    CHECK(t.string(s.backends[0].host) == "pg.backend.lan");
}

TEST_CASE("the default resolver: literals and localhost (getaddrinfo)") {
    auto v4 = control::resolve_host("192.0.2.1");
    CHECK(v4.family == table::format::family_ipv4);
    CHECK(v4.addr[0] == 192);
    auto local = control::resolve_host("localhost");
    CHECK((local.family == table::format::family_ipv4 || local.family == table::format::family_ipv6));
    auto c = sample_config();
    c.routes[0].backends[0].host = "localhost";
    CHECK(control::compile(c, 1).ok());
}

TEST_CASE("records may not sit at or inside a nested zone") {
    auto c = sample_config();
    c.zones[0].records.push_back({"x.db", {a("192.0.2.1")}});
    CHECK(error_of(c) == "zones.json: [\"internal.corp\"].records[\"x.db\"]: \"x.db.internal.corp\" is inside "
                         "zone db.internal.corp: put this record there");
    // The nested zone first in the file, then a parent record at its apex.
    c = sample_config();
    std::swap(c.zones[0], c.zones[1]);
    c.zones[1].records.push_back({"db", {a("192.0.2.1")}});
    CHECK(error_of(c) == "zones.json: [\"internal.corp\"].records.db: \"db.internal.corp\" is the apex of zone "
                         "db.internal.corp: put these records there as \"@\"");
    // The parent record first, the nested zone later in the file.
    c = sample_config();
    c.zones[0].records.push_back({"db", {a("192.0.2.1")}});
    CHECK(error_of(c) == "zones.json: [\"internal.corp\"].records.db: \"db.internal.corp\" is the apex of zone "
                         "db.internal.corp: put these records there as \"@\"");
    // Two labels that differ in case only.
    c = sample_config();
    c.zones[0].records.push_back({"WIKI", {a("192.0.2.1")}});
    CHECK(error_of(c) == "zones.json: [\"internal.corp\"].records.WIKI: \"wiki.internal.corp\" is already an "
                         "owner in zone internal.corp");
}

TEST_CASE("config mistakes the validator should have caught still fail cleanly") {
    auto c = sample_config();
    c.zones.push_back(c.zones[1]);
    CHECK(error_of(c) == "zones.json: [\"db.internal.corp\"]: zone db.internal.corp is defined twice");
    c = sample_config();
    c.zones[1].service_cn = "s0000";
    CHECK(error_of(c) == "zones.json: [\"db.internal.corp\"].service_cn: \"s0000\" is not a service in routes.json");
    c = sample_config();
    c.zones[1].allowed_endpoints.push_back("c999");
    CHECK(error_of(c) == "zones.json: [\"db.internal.corp\"].allowed_endpoints[3]: \"c999\" is not a registered "
                         "endpoint (endpoints.json)");
    c = sample_config();
    c.zones[1].records.push_back({"bad name", {a("192.0.2.1")}});
    CHECK(error_of(c).find("records[\"bad name\"]") != std::string::npos);
    c = sample_config();
    c.routes[0].connect_timeout_ms = 0;
    CHECK(error_of(c) == "routes.json: .s1234abcd5678.connect_timeout_ms: 0 is not a timeout of 1..3600000 ms");
    c = sample_config();
    c.routes[1].backends = {{"10.0.0.1", 1, 4'000'000'000u}, {"10.0.0.2", 1, 4'000'000'000u}};
    CHECK(error_of(c) == "routes.json: .s5678efgh9012.backends: the weights add up to more than 2^32 - 1");
    c = sample_config();
    c.endpoints.push_back(c.endpoints[0]);
    CHECK(error_of(c) == "endpoints.json: .c00000000001: CN registered twice");
}

TEST_CASE("zone names and labels are normalised to lower case") {
    config::config c;
    config::zone z;
    z.name = "Mixed.Case.Corp.";
    z.records = {{"WWW", {a("192.0.2.1")}}};
    c.zones = {z};
    auto r = control::compile(c, 1);
    REQUIRE(r.ok());
    auto t = table::open(r.blob).view;
    CHECK(t.zone_name(0) == "mixed.case.corp");
    CHECK(t.rrset_owner(0) == "www.mixed.case.corp");
    CHECK(t.find("www.MIXED.case.corp").rrset == 0);
}

TEST_CASE("same config, same generation: same bytes; another generation: same body") {
    auto a1 = compile_ok(sample_config(), 5);
    auto a2 = compile_ok(sample_config(), 5);
    CHECK(a1 == a2);
    auto b = compile_ok(sample_config(), 6);
    REQUIRE(a1.size() == b.size());
    CHECK(std::memcmp(a1.data() + 32, b.data() + 32, a1.size() - 32) == 0);
    CHECK(table::open(b).view.generation() == 6);
}

TEST_CASE("large configs: every name found, probe sequences stay short") {
    auto c = generated_config(20000, 500);
    auto blob = compile_ok(c, 1);
    auto r = table::open(blob);
    REQUIRE(r.ok());
    table::format::header h;
    std::memcpy(&h, blob.data(), sizeof h);
    MESSAGE("20000 zones: ", blob.size(), " bytes, longest name probe ", h.name_max_probe, ", endpoint probe ",
            h.endpoint_max_probe);
    CHECK(h.name_max_probe <= table::format::max_probe_limit);
    for (size_t i = 0; i < c.zones.size(); i += 97) {
        auto m = r.view.find("www." + c.zones[i].name);
        CHECK(m.zone == i);
        CHECK(m.rrset != table::none);
        CHECK(r.view.allows(m.zone, r.view.find_endpoint(c.zones[i].allowed_endpoints[0])));
    }
    for (const auto& e : c.endpoints) {
        CHECK(r.view.find_endpoint(e.cn) != table::none);
    }
}
