// Command line parsing (see options.hh).
#include "tools/endpoint/options.hh"

#include "common/net/socket.hh"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace zt::endpoint {

const char* const usage_text = R"(usage: ztdns-endpoint --bundle DIR [options]

Client (default): a local DNS stub that sends every query over mutual-TLS DNS-over-TLS to the appliance, and
transparent tunnels: each private name gets a local address (from --tunnel-net) with a listener on the service's
port; connections to it are carried in mutual TLS to the proxy. Applications need no change.

  --bundle DIR              the directory `ztdns client add` wrote (endpoint.json, cert.pem, key.pem, ca.crt)
  --listen ADDR:PORT        the DNS stub's UDP and TCP address (default 127.0.0.1:53)
  --mode tunnels|dns-only   tunnels (default), or forward DNS only (applications get the proxy's address)
  --split                   only names under the private zones go to the appliance; others go to the resolver
                            the machine had before (/etc/resolv.conf at start, or --fallback)
  --fallback ADDR:PORT      the resolver for other names with --split
  --tunnel-net NET          local tunnel addresses (default 127.77.0.0/16, inside 127.0.0.0/8)
  --dot-connections N       persistent DoT connections (default 2)
  --query-timeout-ms N      a query not answered in time gets SERVFAIL (default 2500)
  --catalog-interval S      how often the private zones are fetched again (default 30; also on SIGHUP)
  --verbose                 debug logging

Service (--service, with a service bundle): keeps --pool connections dialled out to the proxy (no inbound port
needed); each client tunnel the proxy hands over is connected to the local target.

  --service
  --target HOST:PORT        where tunnels go
  --target NAME=HOST:PORT   where tunnels for NAME go (repeat for several names)
  --pool N                  idle connections kept ready (default 4)
  With --service the DNS stub runs only when --listen is given.
)";

namespace {

std::optional<unsigned> number(std::string_view s, unsigned lo, unsigned hi) {
    if (s.empty() || s.size() > 9) {
        return std::nullopt;
    }
    unsigned v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        v = v * 10 + unsigned(c - '0');
    }
    if (v < lo || v > hi) {
        return std::nullopt;
    }
    return v;
}

bool host_port(std::string_view s) {
    auto colon = s.rfind(':');
    return colon != std::string_view::npos && colon > 0 && number(s.substr(colon + 1), 1, 65535).has_value();
}

} // namespace

std::optional<options> parse_options(const std::vector<std::string_view>& args, std::string& err) {
    options o;
    for (size_t i = 0; i < args.size(); ++i) {
        std::string_view a = args[i], value;
        if (auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
            value = a.substr(eq + 1);
            a = a.substr(0, eq);
        } else if (a.starts_with("--") && a != "--split" && a != "--service" && a != "--verbose" && a != "--help") {
            if (i + 1 >= args.size()) {
                err = fmt::format("{}: needs a value", a);
                return std::nullopt;
            }
            value = args[++i];
        }
        auto bad = [&](std::string_view what) {
            err = fmt::format("{} {}: {}", a, value, what);
            return std::nullopt;
        };
        if (a == "--bundle") {
            o.bundle_dir.assign(value);
        } else if (a == "--listen") {
            net::address addr;
            if (!net::parse_address(value, addr)) {
                return bad("expected ADDR:PORT, e.g. 127.0.0.1:53");
            }
            o.listen.assign(value);
            o.listen_given = true;
        } else if (a == "--mode") {
            if (value == "tunnels") {
                o.mode = run_mode::tunnels;
            } else if (value == "dns-only") {
                o.mode = run_mode::dns_only;
            } else {
                return bad("expected tunnels or dns-only");
            }
        } else if (a == "--split") {
            o.split = true;
        } else if (a == "--fallback") {
            net::address addr;
            if (!net::parse_address(value, addr)) {
                return bad("expected ADDR:PORT, e.g. 192.0.2.53:53");
            }
            o.fallback.assign(value);
        } else if (a == "--tunnel-net") {
            o.tunnel_net.assign(value);
        } else if (a == "--service") {
            o.service = true;
        } else if (a == "--target") {
            target_spec t;
            auto eq = value.find('=');
            if (eq != std::string_view::npos) {
                t.name.assign(value.substr(0, eq));
                for (auto& c : t.name) {
                    c = c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
                }
                value = value.substr(eq + 1);
            }
            if (!host_port(value) || (eq != std::string_view::npos && t.name.empty())) {
                return bad("expected HOST:PORT or NAME=HOST:PORT");
            }
            t.address.assign(value);
            o.targets.push_back(std::move(t));
        } else if (a == "--pool") {
            auto n = number(value, 1, 256);
            if (!n) {
                return bad("expected a number from 1 to 256");
            }
            o.pool = *n;
        } else if (a == "--dot-connections") {
            auto n = number(value, 1, 16);
            if (!n) {
                return bad("expected a number from 1 to 16");
            }
            o.dot_connections = *n;
        } else if (a == "--query-timeout-ms") {
            auto n = number(value, 100, 60000);
            if (!n) {
                return bad("expected milliseconds from 100 to 60000");
            }
            o.query_timeout_ms = *n;
        } else if (a == "--catalog-interval") {
            auto n = number(value, 1, 86400);
            if (!n) {
                return bad("expected seconds from 1 to 86400");
            }
            o.catalog_interval_s = *n;
        } else if (a == "--verbose") {
            o.verbose = true;
        } else if (a == "--help" || a == "-h") {
            o.help = true;
            return o;
        } else {
            err = fmt::format("{}: unknown option (see --help)", args[i]);
            return std::nullopt;
        }
    }
    if (o.bundle_dir.empty()) {
        err = "--bundle DIR is required (the directory `ztdns client add` wrote)";
        return std::nullopt;
    }
    if (o.service && o.targets.empty()) {
        err = "--service needs --target HOST:PORT (or NAME=HOST:PORT)";
        return std::nullopt;
    }
    if (!o.service && !o.targets.empty()) {
        err = "--target is for --service";
        return std::nullopt;
    }
    if (!o.fallback.empty() && !o.split) {
        err = "--fallback is for --split";
        return std::nullopt;
    }
    return o;
}

std::vector<std::string> resolv_conf_nameservers(std::string_view text) {
    std::vector<std::string> out;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        auto word = [&line]() {
            size_t b = line.find_first_not_of(" \t\r");
            if (b == std::string_view::npos) {
                line = {};
                return std::string_view{};
            }
            line.remove_prefix(b);
            size_t e = line.find_first_of(" \t\r");
            std::string_view w = line.substr(0, e);
            line = e == std::string_view::npos ? std::string_view{} : line.substr(e);
            return w;
        };
        if (word() != "nameserver") {
            continue;
        }
        std::string addr(word());
        if (auto pct = addr.find('%'); pct != std::string::npos) {
            addr.resize(pct); // fe80::1%eth0: the scope is not ours to use
        }
        unsigned char buf[16];
        if (inet_pton(AF_INET, addr.c_str(), buf) == 1 || inet_pton(AF_INET6, addr.c_str(), buf) == 1) {
            out.push_back(addr);
        }
    }
    return out;
}

std::string pick_fallback(const options& o, std::string_view resolv_conf, std::string& err) {
    if (!o.fallback.empty()) {
        return o.fallback;
    }
    net::address self;
    net::parse_address(o.listen, self);
    for (const auto& ns : resolv_conf_nameservers(resolv_conf)) {
        std::string text = ns.find(':') != std::string::npos ? "[" + ns + "]:53" : ns + ":53";
        net::address a;
        if (!net::parse_address(text, a)) {
            continue;
        }
        if (self.port() == 53 && a.str() == self.str()) {
            continue; // ourselves
        }
        return text;
    }
    err = "--split: /etc/resolv.conf names no resolver other than this stub; give --fallback ADDR:PORT";
    return {};
}

} // namespace zt::endpoint
