// ztdns: the admin CLI. `init` creates a data dir locally; every other command
// goes to ztdns-control over its unix socket, so `ssh edge1 ztdns reload` is
// the remote reload.
#include "control/controller.hh"
#include "control/protocol.hh"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace {

constexpr std::string_view help_text = R"(usage: ztdns [--data-dir DIR | --socket PATH] COMMAND ...

  init --proxy-address IP [--proxy-address IP ...] [--server-name NAME]
       [--dot-listen ADDR:PORT] [--proxy-listen ADDR:PORT] [--admin-listen ADDR:PORT]
       [--upstream ADDR:PORT] [--key ecdsa-p256|rsa4096] [--days N] [--force]
                          create the data dir: config, CA, server certificate
  service add --name NAME --host HOST --port PORT --domain DOMAIN [--domain ...]
              [--service-endpoint]
                          issue a service certificate, add its zone(s) and route
                          (--service-endpoint: the service's ztdns-endpoint --service
                          dials out to the proxy; HOST:PORT is its local target)
  client add NAME [--key rsa4096] [--days N]
                          issue a client certificate and write its bundle
  authorize CN DOMAIN     let CN resolve and reach DOMAIN
  deauthorize CN DOMAIN   take that back
  revoke CN               revoke CN everywhere, cutting its open connections
  list [--json]           services, zones and endpoints
  status                  config state, table generation, data plane subscribers
  metrics                 every data plane's counters, per shard (Prometheus text)
  reload                  re-read the config files (also: SIGHUP to ztdns-control)

The data dir is --data-dir, else $ZTDNS_DATA_DIR, else /var/lib/ztdns.
)";

int run_init(const std::string& dir, const std::vector<std::string>& args) {
    zt::control::init_options o;
    o.dir = dir;
    for (size_t i = 1; i < args.size(); ++i) {
        const auto& a = args[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) {
                std::fprintf(stderr, "ztdns init: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return args[++i];
        };
        if (a == "--proxy-address") {
            o.proxy_addresses.push_back(value());
        } else if (a == "--server-name") {
            o.server_name = value();
        } else if (a == "--dot-listen") {
            o.dot_listen.push_back(value());
        } else if (a == "--proxy-listen") {
            o.proxy_listen.push_back(value());
        } else if (a == "--admin-listen") {
            o.admin_listen = value();
        } else if (a == "--upstream") {
            o.upstreams.push_back(value());
        } else if (a == "--key") {
            auto k = value();
            if (k == "rsa4096") {
                o.keys = zt::config::key_type::rsa4096;
            } else if (k != "ecdsa-p256") {
                std::fprintf(stderr, "ztdns init: --key %s: not a key type (ecdsa-p256, rsa4096)\n", k.c_str());
                return 2;
            }
        } else if (a == "--days") {
            auto d = value();
            char* end = nullptr;
            long v = std::strtol(d.c_str(), &end, 10);
            if (d.empty() || *end || v < 1 || v > 36500) {
                std::fprintf(stderr, "ztdns init: --days %s: not a number of days (1-36500)\n", d.c_str());
                return 2;
            }
            o.days = static_cast<uint32_t>(v);
        } else if (a == "--force") {
            o.force = true;
        } else {
            std::fprintf(stderr, "ztdns init: unknown option %s (see ztdns help)\n", a.c_str());
            return 2;
        }
    }
    auto r = zt::control::init_data_dir(o);
    std::fputs(r.text.c_str(), r.status == 0 ? stdout : stderr);
    if (r.status != 0 && !r.text.empty() && r.text.back() != '\n') {
        std::fputc('\n', stderr);
    }
    return r.status;
}

} // namespace

int main(int argc, char** argv) {
    std::string dir = std::getenv("ZTDNS_DATA_DIR") ? std::getenv("ZTDNS_DATA_DIR") : "/var/lib/ztdns";
    std::string socket;
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (args.empty() && (a == "--data-dir" || a == "--socket") && i + 1 < argc) {
            (a == "--data-dir" ? dir : socket) = argv[++i];
        } else if (args.empty() && a.rfind("--data-dir=", 0) == 0) {
            dir = a.substr(11);
        } else if (args.empty() && (a == "-h" || a == "--help")) {
            args.push_back("help");
        } else {
            args.push_back(a);
        }
    }
    if (args.empty() || args[0] == "help") {
        std::fputs(help_text.data(), args.empty() ? stderr : stdout);
        return args.empty() ? 2 : 0;
    }
    if (args[0] == "init") {
        return run_init(dir, args);
    }
    if (socket.empty()) {
        socket = zt::control::layout{dir}.control_socket();
    }
    std::string err;
    int fd = zt::control::protocol::connect_unix(socket, err);
    if (fd < 0) {
        std::fprintf(stderr, "ztdns: ztdns-control is not running? %s\n", err.c_str());
        return 1;
    }
    // Issuing an RSA 4096 certificate can take seconds; nothing takes a minute.
    zt::control::protocol::set_timeouts(fd, 60000);
    zt::control::reply r;
    if (!zt::control::protocol::write_request(fd, args, err) || !zt::control::protocol::read_reply(fd, r, err)) {
        std::fprintf(stderr, "ztdns: %s\n", err.c_str());
        ::close(fd);
        return 1;
    }
    ::close(fd);
    if (!r.text.empty() && r.text.back() != '\n') {
        r.text += '\n';
    }
    std::fputs(r.text.c_str(), r.status == 0 ? stdout : stderr);
    return r.status;
}
