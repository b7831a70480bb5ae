// ztdns-endpoint's command line, and the resolver the machine had before (/etc/resolv.conf) for --split. Pure:
// parsing only, no file or network access except read_resolv_conf's one read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zt::endpoint {

enum class run_mode : uint8_t { tunnels, dns_only };

/// A service endpoint's local target: connections for `name` (empty: any name) go to host:port.
struct target_spec {
    std::string name;
    std::string address; ///< "HOST:PORT" as given
};

struct options {
    std::string bundle_dir;
    std::string listen = "127.0.0.1:53";
    bool listen_given = false;
    run_mode mode = run_mode::tunnels;
    bool split = false;
    std::string fallback; ///< "ADDR:PORT"; empty: read /etc/resolv.conf
    std::string tunnel_net = "127.77.0.0/16";
    bool service = false;
    std::vector<target_spec> targets;
    unsigned pool = 4;            ///< idle dialled-out connections (service mode)
    unsigned dot_connections = 2; ///< persistent DoT connections
    uint32_t query_timeout_ms = 2500;
    uint32_t catalog_interval_s = 30;
    bool verbose = false;
    bool help = false;
};

/// The usage text.
extern const char* const usage_text;

/// Parses argv[1..]. On error returns nullopt and sets `err` to one line naming the argument.
std::optional<options> parse_options(const std::vector<std::string_view>& args, std::string& err);

/// The IPv4/IPv6 addresses of the `nameserver` lines of a resolv.conf text, in order.
std::vector<std::string> resolv_conf_nameservers(std::string_view text);

/// The fallback resolver for --split: `--fallback` if given; else the first nameserver of `resolv_conf` that is not
/// the stub's own listen address (we must not forward to ourselves), as "ADDR:53". Empty with `err` when none.
std::string pick_fallback(const options& o, std::string_view resolv_conf, std::string& err);

} // namespace zt::endpoint
