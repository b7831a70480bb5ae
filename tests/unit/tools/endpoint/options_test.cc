// ztdns-endpoint's command line and the fallback resolver for --split.
#include "tools/endpoint/options.hh"

#include <doctest/doctest.h>

using namespace zt::endpoint;

namespace {
std::optional<options> parse(std::vector<std::string_view> a, std::string& err) {
    return parse_options(a, err);
}
} // namespace

TEST_CASE("defaults and the usual flags") {
    std::string err;
    auto o = parse({"--bundle", "/b"}, err);
    REQUIRE(o);
    CHECK(o->bundle_dir == "/b");
    CHECK(o->listen == "127.0.0.1:53");
    CHECK_FALSE(o->listen_given);
    CHECK(o->mode == run_mode::tunnels);
    CHECK(o->tunnel_net == "127.77.0.0/16");
    CHECK(o->pool == 4);
    o = parse({"--bundle=/b", "--listen", "127.0.0.2:5353", "--mode", "dns-only", "--split", "--fallback",
               "198.18.1.53:53", "--tunnel-net", "127.78.0.0/16", "--query-timeout-ms", "900"},
              err);
    REQUIRE(o);
    CHECK(o->listen == "127.0.0.2:5353");
    CHECK(o->listen_given);
    CHECK(o->mode == run_mode::dns_only);
    CHECK(o->split);
    CHECK(o->fallback == "198.18.1.53:53");
    CHECK(o->query_timeout_ms == 900);
}

TEST_CASE("service mode targets") {
    std::string err;
    auto o = parse({"--bundle", "/b", "--service", "--target", "127.0.0.1:8080", "--target",
                    "API.internal.corp=127.0.0.1:9090", "--pool", "2"},
                   err);
    REQUIRE(o);
    CHECK(o->service);
    REQUIRE(o->targets.size() == 2);
    CHECK(o->targets[0].name.empty());
    CHECK(o->targets[1].name == "api.internal.corp");
    CHECK(o->targets[1].address == "127.0.0.1:9090");
    CHECK(o->pool == 2);
}

TEST_CASE("mistakes are named") {
    std::string err;
    CHECK_FALSE(parse({}, err));
    CHECK(err.find("--bundle") != std::string::npos);
    CHECK_FALSE(parse({"--bundle", "/b", "--mode", "vpn"}, err));
    CHECK(err.find("vpn") != std::string::npos);
    CHECK_FALSE(parse({"--bundle", "/b", "--listen", "localhost"}, err));
    CHECK_FALSE(parse({"--bundle", "/b", "--service"}, err));
    CHECK(err.find("--target") != std::string::npos);
    CHECK_FALSE(parse({"--bundle", "/b", "--target", "127.0.0.1:1"}, err));
    CHECK_FALSE(parse({"--bundle", "/b", "--service", "--target", "nohostport"}, err));
    CHECK_FALSE(parse({"--bundle", "/b", "--fallback", "127.0.0.1:53"}, err));
    CHECK_FALSE(parse({"--bundle", "/b", "--pool", "0"}, err));
    CHECK_FALSE(parse({"--bundle", "/b", "--frobnicate"}, err));
    CHECK(err.find("--frobnicate") != std::string::npos);
    CHECK_FALSE(parse({"--bundle"}, err));
    auto h = parse({"--help"}, err);
    REQUIRE(h);
    CHECK(h->help);
}

TEST_CASE("resolv.conf and the fallback for --split") {
    const char* text = "# generated\nsearch corp\nnameserver 127.0.0.1\nnameserver   198.18.1.53 \n"
                       "nameserver fe80::1%eth0\nnameserver bogus\noptions edns0\n";
    CHECK(resolv_conf_nameservers(text) == std::vector<std::string>{"127.0.0.1", "198.18.1.53", "fe80::1"});
    std::string err;
    auto o = *parse({"--bundle", "/b", "--split"}, err);
    CHECK(pick_fallback(o, text, err) == "198.18.1.53:53"); // 127.0.0.1 is the stub itself
    CHECK(pick_fallback(o, "nameserver 127.0.0.1\n", err).empty());
    CHECK(err.find("--fallback") != std::string::npos);
    auto other_port = *parse({"--bundle", "/b", "--split", "--listen", "127.0.0.1:5353"}, err);
    CHECK(pick_fallback(other_port, "nameserver 127.0.0.1\n", err) == "127.0.0.1:53");
    auto given = *parse({"--bundle", "/b", "--split", "--fallback", "198.18.1.1:5353"}, err);
    CHECK(pick_fallback(given, text, err) == "198.18.1.1:5353");
}
