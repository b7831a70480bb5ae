// ztdns-endpoint: the client side (local DNS stub over mutual-TLS DoT, transparent tunnels) and the service side
// (connections dialled out to the proxy) of zerotrust-dns. One thread, one epoll loop. See usage_text.
#include "common/tls/tls.hh"
#include "common/util/fs.hh"
#include "common/util/log.hh"
#include "tools/endpoint/address_choice.hh"
#include "tools/endpoint/bundle.hh"
#include "tools/endpoint/cache.hh"
#include "tools/endpoint/catalog.hh"
#include "tools/endpoint/dot_pool.hh"
#include "tools/endpoint/loop.hh"
#include "tools/endpoint/options.hh"
#include "tools/endpoint/plain_resolver.hh"
#include "tools/endpoint/service.hh"
#include "tools/endpoint/stub.hh"
#include "tools/endpoint/tunnels.hh"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <memory>
#include <random>

#include <fmt/format.h>

using namespace zt;
using namespace zt::endpoint;

namespace {

int refuse(const std::string& why) {
    std::fprintf(stderr, "ztdns-endpoint: cannot start: %s\n", why.c_str());
    return 1;
}

/// SIGHUP: fetch the catalog again; SIGINT/SIGTERM: stop.
struct signals : io_handler {
    loop* l = nullptr;
    int fd = -1;
    catalog* cat = nullptr;
    void on_io(uint32_t) override {
        signalfd_siginfo si{};
        while (::read(fd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGHUP) {
                log::info("Endpoint: SIGHUP: fetching the catalog again");
                if (cat) {
                    cat->refresh();
                }
            } else {
                log::info("Endpoint: stopping");
                l->stop();
            }
        }
    }
};

} // namespace

int main(int argc, char** argv) {
    std::vector<std::string_view> args(argv + 1, argv + argc);
    std::string err;
    auto parsed = parse_options(args, err);
    if (!parsed) {
        std::fprintf(stderr, "ztdns-endpoint: %s\n", err.c_str());
        return 2;
    }
    const options& o = *parsed;
    if (o.help) {
        std::fputs(usage_text, stdout);
        return 0;
    }
    if (o.verbose) {
        log::set_level(log::level::debug);
    }
    auto loaded = load_bundle(o.bundle_dir, static_cast<int64_t>(std::time(nullptr)));
    if (!loaded.value) {
        return refuse(loaded.error);
    }
    const bundle& b = *loaded.value;
    for (const auto& w : loaded.warnings) {
        log::warn("Endpoint: {}", w);
    }
    if (o.service && !b.service) {
        return refuse(fmt::format("--service needs a service bundle; {} is for client {}", b.dir, b.cn));
    }
    auto net = parse_tunnel_net(o.tunnel_net, err);
    if (!net) {
        return refuse(err);
    }
    tls::context_options co;
    co.server = false;
    co.cert_pem = b.cert_pem;
    co.key_pem = b.key_pem;
    co.ca_pem = b.ca_pem;
    co.require_peer_cert = true; // the appliance's certificate must chain to the bundle's CA
    auto ctx = tls::context::create(co, err);
    if (!ctx.valid()) {
        return refuse(err);
    }

    ::signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, nullptr);

    loop l;
    if (!l.valid()) {
        return refuse("epoll_create1 failed");
    }
    signals sig;
    sig.l = &l;
    sig.fd = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    fd_watch sig_watch;
    sig_watch.attach(l, sig.fd, &sig);
    sig_watch.set(EPOLLIN);

    // Shared by everything that connects, so that an address that failed is passed over by all; each list starts at
    // a random place, so that endpoints started together spread over the appliance's addresses.
    std::random_device seed;
    address_choice dot_servers(b.dot_servers, seed());
    address_choice proxies(b.proxies, seed());
    const bool with_stub = !o.service || o.listen_given;
    std::unique_ptr<dot_pool> dot;
    std::unique_ptr<dns_cache> cache;
    std::unique_ptr<plain_resolver> fallback;
    std::unique_ptr<tunnels> tun;
    std::unique_ptr<stub> st;
    std::unique_ptr<catalog> cat;
    std::unique_ptr<service_pool> svc;

    if (with_stub) {
        net::address listen_addr;
        net::parse_address(o.listen, listen_addr);
        if (o.split) {
            std::string resolv;
            if (o.fallback.empty() && !fs::read_file("/etc/resolv.conf", resolv, err)) {
                return refuse(fmt::format("--split: {}; give --fallback ADDR:PORT", err));
            }
            std::string fb = pick_fallback(o, resolv, err);
            net::address fa;
            if (fb.empty() || !net::parse_address(fb, fa)) {
                return refuse(err.empty() ? "--split: no usable fallback resolver" : err);
            }
            fallback = std::make_unique<plain_resolver>(l, fa);
            if (!fallback->open(err)) {
                return refuse(err);
            }
        }
        dot = std::make_unique<dot_pool>(l, ctx, dot_servers, b.server_name, o.dot_connections);
        cache = std::make_unique<dns_cache>();
        if (o.mode == run_mode::tunnels) {
            tun = std::make_unique<tunnels>(l, ctx, b, proxies, *net);
        }
        stub_config sc;
        sc.query_timeout_ms = o.query_timeout_ms;
        sc.split = o.split;
        st = std::make_unique<stub>(l, sc, *dot, *cache, tun.get(), fallback.get());
        if (!st->listen(listen_addr, err)) {
            return refuse(err);
        }
        if (tun || o.split) {
            cat = std::make_unique<catalog>(
                l, *dot, b.server_name, tun != nullptr, o.catalog_interval_s, o.query_timeout_ms,
                [&](const std::map<std::string, std::vector<uint16_t>>& zones) {
                    std::vector<std::string> names;
                    for (const auto& [z, ports] : zones) {
                        names.push_back(z);
                    }
                    st->set_private_zones(std::move(names));
                    cache->clear(); // answers for names whose access changed must not outlive the change
                    if (tun) {
                        tun->update(zones);
                    }
                });
            sig.cat = cat.get();
        }
        dot->start();
        l.add_ticker([&](ms_t now) { return dot->tick(now); });
        l.add_ticker([&](ms_t now) { return st->tick(now); });
        if (fallback) {
            l.add_ticker([&](ms_t now) { return fallback->tick(now); });
        }
        if (tun) {
            l.add_ticker([&](ms_t now) { return tun->tick(now); });
        }
        if (cat) {
            cat->refresh();
            l.add_ticker([&](ms_t now) { return cat->tick(now); });
        }
    }
    if (o.service) {
        svc = std::make_unique<service_pool>(l, ctx, b, proxies, o.pool);
        if (!svc->set_targets(o.targets, err)) {
            return refuse(err);
        }
        l.add_ticker([&](ms_t now) { return svc->tick(now); });
    }

    std::string dot_list, proxy_list;
    for (const auto& a : b.dot_servers) {
        dot_list += (dot_list.empty() ? "" : ", ") + a.str();
    }
    for (const auto& a : b.proxies) {
        proxy_list += (proxy_list.empty() ? "" : ", ") + a.str();
    }
    if (with_stub) {
        log::info("Endpoint: {} ({}) DNS on {} (UDP+TCP) → DoT {} as {}; mode {}{}{}", b.cn, b.name, o.listen, dot_list,
                  b.server_name, o.mode == run_mode::tunnels ? "tunnels" : "dns-only",
                  o.split ? "; split, other names → " : "", fallback ? fallback->server().str() : "");
    }
    if (o.service) {
        log::info("Endpoint: service {} ({}) dialling {} connection(s) to {}", b.cn, b.name, o.pool, proxy_list);
    }
    l.run();
    return 0;
}
