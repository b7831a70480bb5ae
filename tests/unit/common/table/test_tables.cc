// Shared fixtures of the route table tests.
#include "tests/unit/common/table/test_tables.hh"

#include "control/table/compiler.hh"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <stdlib.h>

#include <string>

namespace zt::table::test {

config::record a(const char* text) {
    config::record r;
    r.rtype = config::record::type::a;
    REQUIRE(inet_pton(AF_INET, text, r.addr.data()) == 1);
    r.text = std::string("A ") + text;
    return r;
}

config::record aaaa(const char* text) {
    config::record r;
    r.rtype = config::record::type::aaaa;
    REQUIRE(inet_pton(AF_INET6, text, r.addr.data()) == 1);
    r.text = std::string("AAAA ") + text;
    return r;
}

namespace {

config::endpoint ep(const char* cn, const char* name, config::endpoint_kind kind, bool revoked = false) {
    config::endpoint e;
    e.cn = cn;
    e.name = name;
    e.kind = kind;
    e.serial = "0a1b2c3d";
    e.not_after = 2'000'000'000;
    e.revoked = revoked;
    return e;
}

} // namespace

config::config sample_config() {
    config::config c;
    using k = config::endpoint_kind;
    c.endpoints = {
        ep(cn_laptop, "alice laptop", k::client),
        ep(cn_phone, "lost phone", k::client, true),
        ep(cn_db, "PostgreSQL", k::service),
        ep(cn_admin, "admin", k::client),
        ep(cn_api, "API", k::service),
    };
    c.endpoints[3].not_after = 1'700'000'000;

    config::route db;
    db.service_cn = cn_db;
    db.name = "PostgreSQL Production";
    db.backends = {{"10.10.10.50", 5432, 1}};
    db.domains = {"db.internal.corp"};
    config::route api;
    api.service_cn = cn_api;
    api.name = "Internal API";
    api.backends = {{"10.20.30.40", 443, 3}, {"2001:db8::40", 8443, 1}, {"10.20.30.41", 443, 0}};
    api.seed_host_port = false;
    api.connect_timeout_ms = 1500;
    api.health_check = true;
    api.domains = {"api.internal.corp"};
    c.routes = {db, api};

    config::zone internal;
    internal.name = "internal.corp";
    internal.records = {{"@", {a("203.0.113.10")}}, {"wiki", {a("203.0.113.11")}}, {"a.b.c.deep", {a("203.0.113.12")}}};
    internal.service_cn = cn_api;
    internal.allowed_endpoints = {cn_admin, cn_laptop, cn_admin};
    config::zone dbz;
    dbz.name = "db.internal.corp";
    dbz.records = {{"replica", {a("203.0.113.51")}}, {"@", {a("203.0.113.50"), aaaa("2001:db8::50")}}};
    dbz.service_cn = cn_db;
    dbz.allowed_endpoints = {cn_laptop, cn_db, cn_phone};
    config::zone apiz;
    apiz.name = "api.internal.corp";
    apiz.service_cn = cn_api;
    apiz.allowed_endpoints = {cn_admin};
    config::zone other;
    other.name = "example.org";
    other.records = {{"@", {a("198.51.100.1")}}, {"empty", {}}};
    c.zones = {internal, dbz, apiz, other};
    return c;
}

config::config small_config() {
    config::config c;
    using k = config::endpoint_kind;
    c.endpoints = {ep("c1", "a", k::client), ep("c2", "b", k::client, true), ep("s1", "s", k::service)};
    config::route r;
    r.service_cn = "s1";
    r.name = "db";
    r.backends = {{"10.0.0.1", 5432, 2}, {"::1", 5433, 1}};
    r.seed_host_port = false;
    c.routes = {r};
    config::zone z1;
    z1.name = "corp";
    z1.records = {{"@", {a("192.0.2.1")}}, {"w", {aaaa("2001:db8::1")}}};
    z1.service_cn = "s1";
    z1.allowed_endpoints = {"s1", "c1"};
    config::zone z2;
    z2.name = "db.corp";
    z2.service_cn = "s1";
    z2.allowed_endpoints = {"c1"};
    config::zone z3;
    z3.name = "x.io";
    z3.records = {{"@", {a("192.0.2.2")}}};
    c.zones = {z1, z2, z3};
    return c;
}

config::config generated_config(size_t zones, size_t endpoints) {
    config::config c;
    for (size_t i = 0; i < endpoints; ++i) {
        config::endpoint e;
        char cn[32];
        snprintf(cn, sizeof cn, "c%011zx", i);
        e.cn = cn;
        e.name = "client";
        e.serial = "01";
        c.endpoints.push_back(e);
    }
    for (size_t i = 0; i < (zones + 15) / 16; ++i) {
        config::route r;
        r.service_cn = "s" + std::to_string(i);
        r.backends = {{"10.1." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256), 443, 1}};
        c.routes.push_back(r);
    }
    for (size_t i = 0; i < zones; ++i) {
        config::zone z;
        z.name = "z" + std::to_string(i) + ".bench.corp";
        z.records = {{"@", {a("203.0.113.1")}}, {"www", {a("203.0.113.2")}}};
        z.service_cn = "s" + std::to_string(i / 16);
        for (size_t k = 0; k < 3 && endpoints > 0; ++k) {
            z.allowed_endpoints.push_back(c.endpoints[(i * 7 + k * 13) % endpoints].cn);
        }
        c.zones.push_back(z);
    }
    return c;
}

std::vector<std::byte> compile_ok(const config::config& c, uint64_t generation) {
    auto r = control::compile(c, generation);
    INFO((r.error ? r.error->str() : std::string()));
    REQUIRE(r.ok());
    return std::move(r.blob);
}

std::string temp_dir(const char* prefix) {
    std::string tmpl = std::string("/tmp/") + prefix + ".XXXXXX";
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    return tmpl;
}

} // namespace zt::table::test
