// Config parsing: the seed's formats load, every bad input gives one clear
// error naming file, JSON path and problem, and nothing half-loaded escapes.
#include "common/config/parse.hh"
#include "common/config/write.hh"

#include <doctest/doctest.h>

#include <string>

using namespace zt::config;

namespace {

constexpr std::string_view seed_zones = R"({
  "db.internal.corp": {
    "records": {
      "@": "A 203.0.113.50",
      "replica": "A 203.0.113.50"
    },
    "service_cn": "s1234abcd5678",
    "allowed_endpoints": ["c1234abcd", "s1234abcd5678"]
  }
})";

constexpr std::string_view seed_routes = R"({
  "s1234abcd5678": {
    "host": "10.10.10.50",
    "port": 5432,
    "domains": ["db.internal.corp", "postgres.internal.corp"],
    "name": "PostgreSQL Production"
  },
  "s5678efgh9012": {
    "host": "10.20.30.40",
    "port": 443,
    "domains": ["api.internal.corp"],
    "name": "Internal API"
  }
})";

constexpr std::string_view seed_endpoints = R"({
  "c1234abcd": {"name": "Alice-Laptop", "kind": "client", "serial": "01", "not_after": "2036-01-01T00:00:00Z", "revoked": false},
  "s1234abcd5678": {"name": "PostgreSQL Production", "kind": "service", "serial": "02", "not_after": "2036-01-01T00:00:00Z", "revoked": false},
  "s5678efgh9012": {"name": "Internal API", "kind": "service", "serial": "03", "not_after": "2036-01-01T00:00:00Z", "revoked": false}
})";

/// The single error of a parse, as one line; fails the test if not exactly one.
template <typename T>
std::string one_error(const parsed<T>& p) {
    REQUIRE(p.errors.size() == 1);
    return p.errors[0].str();
}

} // namespace

TEST_CASE("the seed's zones.json and routes.json load as written") {
    auto z = parse_zones(seed_zones);
    REQUIRE(z.ok());
    REQUIRE(z.value.size() == 1);
    CHECK(z.value[0].name == "db.internal.corp");
    REQUIRE(z.value[0].records.size() == 2);
    CHECK(z.value[0].records[0].label == "@");
    CHECK(z.value[0].records[0].records[0].rtype == record::type::a);
    CHECK(z.value[0].records[0].records[0].addr[0] == 203);
    CHECK(z.value[0].records[0].records[0].addr[3] == 50);
    CHECK(z.value[0].service_cn == "s1234abcd5678");
    CHECK(z.value[0].allowed_endpoints.size() == 2);

    auto r = parse_routes(seed_routes);
    REQUIRE(r.ok());
    REQUIRE(r.value.size() == 2);
    CHECK(r.value[0].backends.size() == 1);
    CHECK(r.value[0].backends[0].host == "10.10.10.50");
    CHECK(r.value[0].backends[0].port == 5432);
    CHECK(r.value[0].domains[1] == "postgres.internal.corp");
    CHECK(r.value[1].name == "Internal API");

    auto e = parse_endpoints(seed_endpoints);
    REQUIRE(e.ok());
    config c{appliance{}, z.value, r.value, e.value};
    CHECK(cross_check(c).empty());
}

TEST_CASE("written files parse back to the same model") {
    auto z = parse_zones(seed_zones).value;
    auto r = parse_routes(seed_routes).value;
    auto e = parse_endpoints(seed_endpoints).value;
    auto z2 = parse_zones(zones_json(z));
    auto r2 = parse_routes(routes_json(r));
    auto e2 = parse_endpoints(endpoints_json(e));
    REQUIRE(z2.ok());
    REQUIRE(r2.ok());
    REQUIRE(e2.ok());
    CHECK(zones_json(z2.value) == zones_json(z));
    CHECK(routes_json(r2.value) == routes_json(r));
    CHECK(endpoints_json(e2.value) == endpoints_json(e));
    CHECK(e2.value[0].not_after == e[0].not_after);
    auto a = parse_appliance(appliance_json(appliance{}));
    REQUIRE(a.ok());
    CHECK(appliance_json(a.value) == appliance_json(appliance{}));
}

TEST_CASE("names are normalized to lower case without the trailing dot") {
    auto z = parse_zones(R"({"DB.Internal.Corp.": {"records": {"Replica": "a 203.0.113.50"}, "allowed_endpoints": []}})");
    REQUIRE(z.ok());
    CHECK(z.value[0].name == "db.internal.corp");
    CHECK(z.value[0].records[0].label == "replica");
    CHECK(z.value[0].records[0].records[0].rtype == record::type::a);
}

TEST_CASE("several records per label and AAAA") {
    auto z = parse_zones(
        R"({"api.corp": {"records": {"@": ["A 203.0.113.50", "A 203.0.113.51", "AAAA 2001:db8::50"]}, "allowed_endpoints": []}})");
    REQUIRE(z.ok());
    REQUIRE(z.value[0].records[0].records.size() == 3);
    CHECK(z.value[0].records[0].records[2].rtype == record::type::aaaa);
    CHECK(z.value[0].records[0].records[2].addr[0] == 0x20);
}

TEST_CASE("routes: backends extension") {
    auto r = parse_routes(R"({"s1": {"backends": [{"host": "127.0.0.1", "port": 5432, "weight": 3},
        {"host": "localhost", "port": 5433}], "domains": ["db.corp"], "name": "db", "health_check": true,
        "connect_timeout_ms": 500}})");
    REQUIRE(r.ok());
    REQUIRE(r.value[0].backends.size() == 2);
    CHECK(r.value[0].backends[0].weight == 3);
    CHECK(r.value[0].backends[1].weight == 1);
    CHECK(r.value[0].health_check);
    CHECK(r.value[0].connect_timeout_ms == 500);
    CHECK_FALSE(r.value[0].seed_host_port);
    auto again = parse_routes(routes_json(r.value));
    REQUIRE(again.ok());
    CHECK(again.value[0].backends[1].host == "localhost");
}

TEST_CASE("routes.json errors name the file, the path and the problem") {
    CHECK(one_error(parse_routes(R"({"s1234abcd5678": {"host": "10.10.10.50", "port": 70000, "domains": []}})")) ==
          "routes.json: .s1234abcd5678.port: 70000 is not a port (1-65535)");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 0, "domains": []}})")) ==
          "routes.json: .s1.port: 0 is not a port (1-65535)");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": "5432", "domains": []}})")) ==
          "routes.json: .s1.port: must be a number, not a string");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 54.5, "domains": []}})")) ==
          "routes.json: .s1.port: 54.5 is not a port (1-65535)");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "domains": []}})")) ==
          "routes.json: .s1: missing key \"port\"");
    CHECK(one_error(parse_routes(R"({"s1": {"port": 1, "domains": []}})")) ==
          "routes.json: .s1: missing key \"host\" (or \"backends\")");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 1}})")) ==
          "routes.json: .s1: missing key \"domains\"");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 1, "domains": ["bad..name"]}})")) ==
          "routes.json: .s1.domains[0]: \"bad..name\" is not a valid DNS name: empty label");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 1, "domains": [], "prot": 1}})"))
              .find("routes.json: .s1.prot: unknown key") == 0);
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 1, "domains": [], "backends": [{"host": "h", "port": 1}]}})")) ==
          "routes.json: .s1: has both host/port and backends: use one");
    CHECK(one_error(parse_routes(R"({"s1": {"backends": [], "domains": []}})")) ==
          "routes.json: .s1.backends: needs at least one backend");
    CHECK(one_error(parse_routes(R"({"s1": {"backends": [{"host": "h"}], "domains": []}})")) ==
          "routes.json: .s1.backends[0]: missing key \"port\"");
    CHECK(one_error(parse_routes(R"({"s1": {"backends": [{"host": "h", "port": 1, "weight": 0}], "domains": []}})")) ==
          "routes.json: .s1.backends[0].weight: 0 is not a weight (1-1000000)");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "", "port": 1, "domains": []}})")) ==
          "routes.json: .s1.host: host must be 1-253 characters");
    CHECK(one_error(parse_routes(R"({"s 1": {"host": "h", "port": 1, "domains": []}})")) ==
          "routes.json: [\"s 1\"]: \"s 1\" is not a valid CN (1-64 of A-Z a-z 0-9 . _ -)");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 1, "domains": [], "health_check": "yes"}})")) ==
          "routes.json: .s1.health_check: must be true or false, not a string");
    CHECK(one_error(parse_routes(R"({"s1": 5})")) == "routes.json: .s1: must be an object, not a number");
    CHECK(one_error(parse_routes(R"([])")) == "routes.json: must be an object at the top level, not an array");
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 1, "domains": []},)"))
              .find("routes.json: not valid JSON: ") == 0);
    CHECK(one_error(parse_routes(R"({"s1": {"host": "h", "port": 1, "domains": []}, "s1": {}})")) ==
          "routes.json: .s1: duplicate key");
}

TEST_CASE("zones.json errors") {
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {"@": "A 300.1.1.1"}, "allowed_endpoints": []}})")) ==
          "zones.json: [\"db.corp\"].records[\"@\"]: \"300.1.1.1\" is not an IPv4 address");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {"@": "MX 10 mail"}, "allowed_endpoints": []}})")) ==
          "zones.json: [\"db.corp\"].records[\"@\"]: record type \"MX\" is not supported (A, AAAA)");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {"@": "A"}, "allowed_endpoints": []}})")) ==
          "zones.json: [\"db.corp\"].records[\"@\"]: expected \"A <IPv4>\" or \"AAAA <IPv6>\"");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {"@": "AAAA 1.2.3.4"}, "allowed_endpoints": []}})")) ==
          "zones.json: [\"db.corp\"].records[\"@\"]: \"1.2.3.4\" is not an IPv6 address");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {"@": []}, "allowed_endpoints": []}})")) ==
          "zones.json: [\"db.corp\"].records[\"@\"]: empty list of records");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {"@": ["A 1.2.3.4", 7]}, "allowed_endpoints": []}})")) ==
          "zones.json: [\"db.corp\"].records[\"@\"][1]: must be a string, not a number");
    CHECK(one_error(parse_zones(R"({"db.corp": {"allowed_endpoints": []}})")) ==
          "zones.json: [\"db.corp\"]: missing key \"records\"");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {}}})")) ==
          "zones.json: [\"db.corp\"]: missing key \"allowed_endpoints\"");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {}, "allowed_endpoints": ["c1", "c1"]}})")) ==
          "zones.json: [\"db.corp\"].allowed_endpoints[1]: \"c1\" is listed twice");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {}, "allowed_endpoints": "c1"}})")) ==
          "zones.json: [\"db.corp\"].allowed_endpoints: must be an array of strings, not a string");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {}, "allowed_endpoints": [], "service_cn": 1}})")) ==
          "zones.json: [\"db.corp\"].service_cn: must be a string, not a number");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {}, "allowed_endpoints": []}, "DB.corp": {"records": {}, "allowed_endpoints": []}})")).find("appears twice") != std::string::npos);
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {"a": "A 1.1.1.1", "A": "A 1.1.1.2"}, "allowed_endpoints": []}})")) ==
          "zones.json: [\"db.corp\"].records.A: label a appears twice");
    std::string long_label(64, 'a');
    CHECK(one_error(parse_zones("{\"" + long_label + ".corp\": {\"records\": {}, \"allowed_endpoints\": []}}")) ==
          "zones.json: [\"" + long_label + ".corp\"]: \"" + long_label +
              ".corp\" is not a valid DNS name: label of 64 characters (at most 63)");
    std::string long_name;
    for (int i = 0; i < 50; ++i) {
        long_name += "abcd.";
    }
    long_name += "corp";
    CHECK(one_error(parse_zones("{\"" + long_name + "\": {\"records\": {}, \"allowed_endpoints\": []}}"))
              .find("254 characters (at most 253)") != std::string::npos);
    CHECK(one_error(parse_zones(R"({"db corp": {"records": {}, "allowed_endpoints": []}})")) ==
          "zones.json: [\"db corp\"]: \"db corp\" is not a valid DNS name: character \" \" not allowed");
    CHECK(one_error(parse_zones(R"({"db.corp": {"records": {}, "allowed_endpoints": [], "ttl": 5}})"))
              .find("zones.json: [\"db.corp\"].ttl: unknown key") == 0);
    CHECK(one_error(parse_zones("{\"db.corp\": {\"records\": {}, \"allowed_endpoints\": [\"c\\u0001\"]}}")) ==
          "zones.json: [\"db.corp\"].allowed_endpoints[0]: \"c\\x01\" is not a valid CN (1-64 of A-Z a-z 0-9 . _ -)");
}

TEST_CASE("endpoints.json errors") {
    CHECK(one_error(parse_endpoints(R"({"c1": {"name": "a", "kind": "robot"}})")) ==
          "endpoints.json: .c1.kind: \"robot\" is not a kind (client, service)");
    CHECK(one_error(parse_endpoints(R"({"c1": {"name": "a"}})")) == "endpoints.json: .c1: missing key \"kind\"");
    CHECK(one_error(parse_endpoints(R"({"c1": {"kind": "client", "not_after": "tomorrow"}})")) ==
          "endpoints.json: .c1.not_after: \"tomorrow\" is not a time like 2036-11-23T00:16:00Z");
    CHECK(one_error(parse_endpoints(R"({"c1": {"kind": "client", "revoked": "no"}})")) ==
          "endpoints.json: .c1.revoked: must be true or false, not a string");
}

TEST_CASE("ztdns.json errors") {
    CHECK(one_error(parse_appliance(R"({"dot_listen": ["0.0.0.0"]})")) ==
          "ztdns.json: .dot_listen[0]: \"0.0.0.0\" is not address:port");
    CHECK(one_error(parse_appliance(R"({"proxy_listen": ["0.0.0.0:99999"]})")) ==
          "ztdns.json: .proxy_listen[0]: 99999 is not a port (0-65535)");
    CHECK(one_error(parse_appliance(R"({"proxy_listen": ["[::1:8443"]})")) ==
          "ztdns.json: .proxy_listen[0]: \"[::1:8443\" is not [IPv6]:port");
    CHECK(one_error(parse_appliance(R"({"proxy_addresses": ["203.0.113.500"]})")) ==
          "ztdns.json: .proxy_addresses[0]: \"203.0.113.500\" is not an IP address");
    CHECK(one_error(parse_appliance(R"({"upstreams": ["one.one.one.one:53"]})")) ==
          "ztdns.json: .upstreams[0]: \"one.one.one.one\" is not an IPv4 address (write IPv6 as [addr]:port)");
    CHECK(one_error(parse_appliance(R"({"tls_min_version": "1.1"})")) ==
          "ztdns.json: .tls_min_version: \"1.1\" is not a TLS version (1.2, 1.3)");
    CHECK(one_error(parse_appliance(R"({"key_type": "dsa"})")) ==
          "ztdns.json: .key_type: \"dsa\" is not a key type (ecdsa-p256, rsa4096)");
    CHECK(one_error(parse_appliance(R"({"limits": {"idle_timeout_ms": 1}})")) ==
          "ztdns.json: .limits.idle_timeout_ms: 1 is not a timeout in ms (10-86400000)");
    CHECK(one_error(parse_appliance(R"({"limits": {"idle": 1}})")).find("ztdns.json: .limits.idle: unknown key") == 0);
    CHECK(one_error(parse_appliance(R"({"shards": -1})")) == "ztdns.json: .shards: -1 is not a shard count (0-1024)");
    CHECK(one_error(parse_appliance(R"({"dot_listen": []})")) == "ztdns.json: .dot_listen: needs at least one address");
    auto ok = parse_appliance(R"({"dot_listen": ["127.0.0.1:8853", "[::1]:8853"], "proxy_addresses": ["203.0.113.50", "2001:db8::50"]})");
    CHECK(ok.ok());
    CHECK(ok.value.dot_listen.size() == 2);
}

TEST_CASE("cross-checks between files") {
    auto z = parse_zones(seed_zones).value;
    auto r = parse_routes(seed_routes).value;
    auto e = parse_endpoints(seed_endpoints).value;

    SUBCASE("service_cn must be a route") {
        auto z2 = z;
        z2[0].service_cn = "s000000000000";
        auto errs = cross_check({appliance{}, z2, r, e});
        // The route that lists the zone's name now disagrees with it too.
        REQUIRE(errs.size() == 2);
        CHECK(errs[0].str() == "zones.json: [\"db.internal.corp\"].service_cn: \"s000000000000\" is not a service in routes.json");
        CHECK(errs[1].str() == "routes.json: .s1234abcd5678.domains[0]: db.internal.corp is served by s000000000000 in zones.json, not by s1234abcd5678");
    }
    SUBCASE("allowed endpoints must be registered") {
        auto z2 = z;
        z2[0].allowed_endpoints.push_back("c999");
        auto errs = cross_check({appliance{}, z2, r, e});
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].str() == "zones.json: [\"db.internal.corp\"].allowed_endpoints[2]: \"c999\" is not a registered endpoint (endpoints.json)");
    }
    SUBCASE("a revoked endpoint cannot be allowed") {
        auto e2 = e;
        e2[0].revoked = true;
        auto errs = cross_check({appliance{}, z, r, e2});
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].str() == "zones.json: [\"db.internal.corp\"].allowed_endpoints[0]: \"c1234abcd\" is revoked");
    }
    SUBCASE("no domain belongs to two services") {
        auto r2 = r;
        r2[1].domains.push_back("db.internal.corp");
        auto errs = cross_check({appliance{}, z, r2, e});
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].str() == "routes.json: .s5678efgh9012.domains[1]: db.internal.corp already belongs to service s1234abcd5678");
    }
    SUBCASE("a route's domain with a zone must name the same service") {
        auto r2 = r;
        r2[0].domains.erase(r2[0].domains.begin());
        r2[1].domains.push_back("db.internal.corp");
        auto errs = cross_check({appliance{}, z, r2, e});
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].str() == "routes.json: .s5678efgh9012.domains[1]: db.internal.corp is served by s1234abcd5678 in zones.json, not by s5678efgh9012");
    }
    SUBCASE("a service CN must be a service endpoint") {
        auto e2 = e;
        e2[1].kind = endpoint_kind::client;
        auto errs = cross_check({appliance{}, z, r, e2});
        REQUIRE(errs.size() == 1);
        CHECK(errs[0].str() == "endpoints.json: .s1234abcd5678.kind: a CN in routes.json must be of kind \"service\"");
    }
}

TEST_CASE("several errors are all reported, and nothing is half loaded") {
    auto r = parse_routes(R"({"s1": {"host": "h", "port": 0, "domains": []}, "s2": {"host": "h", "port": 2, "domains": []}, "s3": {"port": 1, "domains": []}})");
    CHECK(r.errors.size() == 2);
    CHECK(r.value.empty());
}

TEST_CASE("time round trip") {
    auto t = parse_time("2036-11-23T00:16:00Z");
    REQUIRE(t);
    CHECK(format_time(*t) == "2036-11-23T00:16:00Z");
    CHECK_FALSE(parse_time("2036-13-23T00:16:00Z"));
    CHECK_FALSE(parse_time("2036-11-23 00:16:00"));
}
