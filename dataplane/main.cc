// ztdns-dataplane: the DoT server (and, later, the TLS proxy). One shard per
// online core, each a thread pinned to its core with its own io_uring and
// SO_REUSEPORT listeners. The main thread owns the table subscription (from
// ztdns-control, or the table file alone), signals and counters.
#include "common/config/parse.hh"
#include "common/net/socket.hh"
#include "common/table/subscriber.hh"
#include "common/tls/ktls.hh"
#include "common/tls/tls.hh"
#include "common/util/fs.hh"
#include "common/util/log.hh"
#include "dataplane/shard.hh"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace {

constexpr std::string_view usage = R"(usage: ztdns-dataplane [--data-dir DIR] [--shards N] [--dot-listen ADDR:PORT ...]
                       [--proxy-listen ADDR:PORT ...] [--upstream ADDR:PORT ...]
                       [--ktls auto|on|off] [--busy-poll-us N] [--log-queries on|off]
                       [--log-level LEVEL] [--no-control]

Serves DNS over TLS and the TLS proxy (mutual TLS, client certificates from
the data dir's CA) with the route table from ztdns-control (DIR/table.sock)
or, without it, the last table file (DIR/route.table). Listen addresses,
upstreams and limits come from DIR/ztdns.json; the options override them.
--busy-poll-us N: after a loop turn that moved tunnel bytes, a shard polls
for new completions for up to N microseconds (default 50) before it sleeps,
so a reply that comes back meanwhile is seen without waking an idle core; it
does not poll for clients that answer slower than 2N, backs off when polls
keep finding nothing, never polls for DoT or when idle; 0 turns it off.
SIGTERM stops gracefully. SIGHUP reads DIR/route.table again and adopts it
when it is newer than the table in use (for --no-control; with control,
tables come over its socket anyway).
)";

struct options {
    std::string dir = std::getenv("ZTDNS_DATA_DIR") ? std::getenv("ZTDNS_DATA_DIR") : "/var/lib/ztdns";
    uint32_t shards = 0;
    std::vector<std::string> dot_listen;
    std::vector<std::string> proxy_listen;
    std::vector<std::string> upstreams;
    bool log_queries = true;
    bool use_control = true;
    std::string ktls = "auto"; ///< auto | on | off
    uint32_t busy_poll_us = 50;
};

bool parse_args(int argc, char** argv, options& o) {
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "ztdns-dataplane: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--data-dir") {
            o.dir = value();
        } else if (a == "--shards") {
            o.shards = static_cast<uint32_t>(std::strtoul(value().c_str(), nullptr, 10));
        } else if (a == "--dot-listen") {
            o.dot_listen.push_back(value());
        } else if (a == "--proxy-listen") {
            o.proxy_listen.push_back(value());
        } else if (a == "--upstream") {
            o.upstreams.push_back(value());
        } else if (a == "--log-queries") {
            o.log_queries = value() != "off";
        } else if (a == "--log-level") {
            std::string l = value();
            zt::log::set_level(l == "debug"  ? zt::log::level::debug
                               : l == "warn" ? zt::log::level::warn
                               : l == "error" ? zt::log::level::error
                                              : zt::log::level::info);
        } else if (a == "--ktls") {
            o.ktls = value();
            if (o.ktls != "auto" && o.ktls != "on" && o.ktls != "off") {
                std::fprintf(stderr, "ztdns-dataplane: --ktls %s: expected auto, on or off\n", o.ktls.c_str());
                std::exit(2);
            }
        } else if (a == "--busy-poll-us") {
            std::string v = value();
            char* end = nullptr;
            unsigned long us = std::strtoul(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || us > 10000) {
                std::fprintf(stderr, "ztdns-dataplane: --busy-poll-us %s: expected 0 to 10000\n", v.c_str());
                std::exit(2);
            }
            o.busy_poll_us = static_cast<uint32_t>(us);
        } else if (a == "--no-control") {
            o.use_control = false;
        } else if (a == "-h" || a == "--help") {
            std::fputs(usage.data(), stdout);
            std::exit(0);
        } else {
            std::fprintf(stderr, "ztdns-dataplane: unknown argument %s\n%s", a.c_str(), usage.data());
            return false;
        }
    }
    return true;
}

std::string read_or_die(const std::string& path) {
    std::string text, err;
    if (!zt::fs::read_file(path, text, err)) {
        throw std::runtime_error(err);
    }
    return text;
}

} // namespace

int main(int argc, char** argv) {
    options o;
    if (!parse_args(argc, argv, o)) {
        return 2;
    }
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, nullptr); // shards inherit the mask
    int sig_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    try {
        auto app = zt::config::parse_appliance(read_or_die(o.dir + "/ztdns.json"));
        if (!app.ok()) {
            throw std::runtime_error(app.errors[0].str());
        }
        const auto& a = app.value;
#ifdef ZT_SYSTEM_WOLFSSL
        zt::log::warn("DNS: built with Debian's wolfSSL (no AES-NI): bulk TLS is slow");
#endif
        std::string err;
        bool so_ktls = false;
        zt::tls::context_options tls_opts;
        tls_opts.server = true;
        tls_opts.ca_pem = read_or_die(o.dir + "/ca/ca.crt");
        tls_opts.allow_tls12 = a.tls_min_version == "1.2";
        // The server certificate: loaded now, and again whenever control renews it.
        std::vector<std::unique_ptr<zt::tls::context>> contexts;
        std::string cert_file = o.dir + "/server/server.crt", key_file = o.dir + "/server/server.key";
        auto stamp = [](const std::string& path) {
            struct stat st {};
            return ::stat(path.c_str(), &st) == 0 ? st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec : 0LL;
        };
        long long loaded_stamp = 0;
        auto load_server_cert = [&]() -> bool {
            long long now_stamp = stamp(cert_file) ^ (stamp(key_file) << 1);
            if (now_stamp == loaded_stamp) {
                return true;
            }
            std::string e;
            auto opts = tls_opts;
            if (!zt::fs::read_file(cert_file, opts.cert_pem, e) || !zt::fs::read_file(key_file, opts.key_pem, e)) {
                zt::log::warn("DNS: {}", e);
                return false;
            }
            auto ctx = std::make_unique<zt::tls::context>(zt::tls::context::create(opts, e));
            if (!ctx->valid()) {
                // Control writes the key, then the certificate: a half-renewed pair is retried.
                err = e;
                return false;
            }
            loaded_stamp = now_stamp;
            contexts.push_back(std::move(ctx));
            return true;
        };
        if (!load_server_cert()) {
            throw std::runtime_error("server certificate: " + err);
        }

        // Kernel TLS: probed once. `on` without it is a start-up error, not a slow surprise.
        if (o.ktls != "off") {
            auto probe = zt::tls::ktls::probe();
            if (!probe.available && o.ktls == "on") {
                throw std::runtime_error("--ktls on, but this kernel has no kernel TLS: " + probe.reason);
            }
            zt::log::info("Proxy: kernel TLS {}: {}", probe.available ? "on" : "off (user-space TLS)", probe.reason);
            so_ktls = probe.available;
        }
        uint32_t shards = o.shards ? o.shards : a.shards;
        if (shards == 0) {
            shards = std::max(1u, std::thread::hardware_concurrency());
        }
        zt::dataplane::shard_options so;
        so.ktls = so_ktls;
        so.busy_poll_us = o.busy_poll_us;
        so.shard_count = shards;
        so.server_name = a.server_name;
        so.max_connections = a.limits.max_connections_per_shard;
        so.max_connections_per_cn = a.limits.max_connections_per_cn;
        so.handshake_timeout_ms = a.limits.handshake_timeout_ms;
        so.idle_timeout_ms = a.limits.idle_timeout_ms;
        so.tunnel_idle_timeout_ms = a.limits.tunnel_idle_timeout_ms;
        so.upstream_timeout_ms = a.limits.upstream_timeout_ms;
        so.max_queries_per_connection = a.limits.max_queries_per_connection;
        so.cache_entries = a.limits.dns_cache_entries;
        so.log_queries = o.log_queries;
        for (const auto& u : o.upstreams.empty() ? a.upstreams : o.upstreams) {
            zt::net::address addr;
            if (!zt::net::parse_address(u, addr)) {
                throw std::runtime_error("bad upstream address " + u);
            }
            so.upstreams.push_back(addr);
        }
        // Port 0 means "any": bind once to learn the port, then every shard binds it.
        std::vector<int> first_listeners;
        auto bind_all = [&](const std::vector<std::string>& from, std::vector<zt::net::address>& to) {
            for (const auto& l : from) {
                zt::net::address addr;
                if (!zt::net::parse_address(l, addr)) {
                    throw std::runtime_error("bad listen address " + l);
                }
                if (addr.port() != 0) {
                    // SO_REUSEPORT would let us share a port another appliance
                    // already serves, silently splitting its clients: refuse.
                    // (SO_REUSEADDR: a restart's TIME_WAIT connections do not count, a listener does.)
                    int probe = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
                    int one = 1;
                    if (probe >= 0) {
                        ::setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                    }
                    bool taken = probe >= 0 && ::bind(probe, addr.sa(), addr.length) != 0 && errno == EADDRINUSE;
                    if (probe >= 0) {
                        ::close(probe);
                    }
                    if (taken) {
                        throw std::runtime_error("cannot listen on " + addr.str() + ": the port is in use");
                    }
                }
                int fd = zt::net::listen_tcp(addr, 16, err);
                if (fd < 0) {
                    throw std::runtime_error(err);
                }
                uint16_t port = zt::net::bound_port(fd);
                if (addr.family() == AF_INET) {
                    reinterpret_cast<sockaddr_in*>(&addr.storage)->sin_port = htons(port);
                } else {
                    reinterpret_cast<sockaddr_in6*>(&addr.storage)->sin6_port = htons(port);
                }
                first_listeners.push_back(fd); // held until the shards listen, so the port stays ours
                to.push_back(addr);
            }
        };
        bind_all(o.dot_listen.empty() ? a.dot_listen : o.dot_listen, so.dot_listen);
        bind_all(o.proxy_listen.empty() ? a.proxy_listen : o.proxy_listen, so.proxy_listen);
        // The hard fd limit, shared out: 256 for the process; per shard its
        // listeners, upstream sockets, ring, eventfd and a few TCP retries,
        // and with kernel TLS its pool of empty pipes; the rest is for
        // connections (shard::init() divides by what one costs).
        rlimit rl{};
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        uint64_t per_shard = so.dot_listen.size() + so.proxy_listen.size() +
                             so.upstreams.size() * zt::dataplane::shard::upstream_sockets + 16 +
                             (so_ktls ? 2 * zt::dataplane::shard::pipe_pool_cap : 0);
        uint64_t fixed = 256 + per_shard * shards;
        so.fd_budget = static_cast<uint32_t>(
            std::clamp<uint64_t>((rl.rlim_cur > fixed ? rl.rlim_cur - fixed : 0) / shards, 1, UINT32_MAX));

        // Each shard counts into its own block of a shared page that control
        // maps read-only (`ztdns metrics`).
        std::string page_error;
        auto page = zt::metrics::page::create(zt::dataplane::page_slots(), sizeof(zt::dataplane::shard_counters),
                                              shards, page_error);
        if (!page) {
            throw std::runtime_error(page_error);
        }
        std::vector<zt::dataplane::shard_counters*> counters;
        for (uint32_t i = 0; i < shards; ++i) {
            counters.push_back(new (page->block(i)) zt::dataplane::shard_counters());
        }
        zt::table::holder holder(shards + 2); // the shards, this thread, the health prober
        zt::table::subscriber sub(holder, {o.dir + "/table.sock"});
        sub.share_metrics(page->fd());
        if (zt::fs::exists(o.dir + "/route.table")) {
            if (auto e = sub.load_file(o.dir + "/route.table"); !e.empty()) {
                zt::log::warn("DNS: {}", e);
            }
        }

        zt::dataplane::shard_shared shared;
        shared.server_tls.store(contexts.back().get(), std::memory_order_release);
        zt::dataplane::health_board health;
        shared.health = &health;
        std::vector<std::unique_ptr<zt::dataplane::shard>> all;
        for (uint32_t i = 0; i < shards; ++i) {
            all.push_back(std::make_unique<zt::dataplane::shard>(i, so, shared, holder.add_reader(), *counters[i]));
        }
        std::vector<std::thread> threads;
        std::atomic<uint32_t> ready{0};
        std::atomic<bool> failed{false};
        std::string shard_error;
        std::mutex error_mutex;
        unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
        for (uint32_t i = 0; i < shards; ++i) {
            threads.emplace_back([&, i] {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(i % cpus, &set);
                pthread_setaffinity_np(pthread_self(), sizeof set, &set);
                std::string e;
                if (!all[i]->init(e)) {
                    std::lock_guard lock(error_mutex);
                    shard_error = e;
                    failed = true;
                    ++ready;
                    return;
                }
                ++ready;
                while (ready.load() < shards) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                }
                if (!failed) {
                    all[i]->run();
                }
            });
        }
        while (ready.load() < shards) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        for (int fd : first_listeners) {
            ::close(fd);
        }
        if (failed) {
            shared.stop = true;
            for (auto& t : threads) {
                t.join();
            }
            throw std::runtime_error(shard_error);
        }
        std::thread prober;
        if (!so.proxy_listen.empty()) {
            prober = std::thread([&health, &shared, r = holder.add_reader()]() mutable {
                zt::dataplane::health_prober(health, std::move(r), {}).run(shared.stop);
            });
        }
        for (const auto& l : so.dot_listen) {
            zt::log::info("DNS: listening on {} (DoT, {} shards)", l.str(), shards);
        }
        for (const auto& l : so.proxy_listen) {
            zt::log::info("Proxy: listening on {} (TLS proxy, {} shards)", l.str(), shards);
        }
        if (!sub.generation()) {
            zt::log::warn("DNS: no route table yet: every name is forwarded until ztdns-control publishes one");
        }
        for (;;) {
            pollfd fds[2] = {{sig_fd, POLLIN, 0}, {o.use_control ? sub.fd() : -1, sub.events(), 0}};
            int wait = sub.timeout_ms();
            if (wait < 0 || wait > 1000) {
                wait = 1000;
            }
            ::poll(fds, 2, wait);
            if (fds[0].revents & POLLIN) {
                signalfd_siginfo si{};
                if (::read(sig_fd, &si, sizeof si) == sizeof si && si.ssi_signo != SIGHUP) {
                    zt::log::info("DNS: stopping (signal {}), finishing open work", si.ssi_signo);
                    break;
                }
                if (si.ssi_signo == SIGHUP) {
                    // The table file again (a newer generation is adopted, as
                    // from control; a broken file leaves the table in use).
                    zt::log::info("Table: SIGHUP: reading {}/route.table", o.dir);
                    if (auto e = sub.load_file(o.dir + "/route.table"); !e.empty()) {
                        zt::log::warn("Table: {}; the table in use stays", e);
                    }
                }
            }
            if (o.use_control) {
                if (fds[1].revents) {
                    sub.on_ready(fds[1].revents);
                }
                sub.on_timer();
            }
            if (size_t before = contexts.size(); load_server_cert() && contexts.size() != before) {
                shared.server_tls.store(contexts.back().get(), std::memory_order_release);
                zt::log::info("DNS: server certificate reloaded");
            }
        }
        shared.stop = true;
        for (auto& s : all) {
            s->wake();
        }
        for (auto& t : threads) {
            t.join();
        }
        if (prober.joinable()) {
            prober.join();
        }
        zt::metrics::view totals;
        if (auto e = totals.open(page->fd()); !e.empty()) {
            throw std::runtime_error(e);
        }
        zt::log::info("DNS: stopped after {} connections, {} queries ({} private, {} forwarded, {} cache hits); "
                      "{} tunnels ({} kTLS, {} closed on a client KeyUpdate)",
                      totals.total("connections_accepted"), totals.total("queries"), totals.total("queries_private"),
                      totals.total("queries_forwarded"), totals.total("cache_hits"), totals.total("tunnels_opened"),
                      totals.total("tunnels_ktls"), totals.total("ktls_key_updates"));
        return 0;
    } catch (const std::exception& e) {
        zt::log::error("DNS: {}", e.what());
        return 1;
    }
}
