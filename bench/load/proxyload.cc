// zt-proxyload: load generator for a TLS proxy (SNI names the service) or, with
// --plain, for the backend directly. Handshake rate, ping-pong latency on
// persistent tunnels, bulk streaming, N idle tunnels held for a memory reading,
// or one checked round trip. One JSON line per metric on stdout.
#include "bench/load/common.hh"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

namespace zt::bench {
namespace {

constexpr std::string_view usage =
    R"(usage: zt-proxyload --server HOST:PORT (--plain | --ca FILE (--cert FILE --key FILE | --no-client-cert)) [options]

  --mode handshake|pingpong|bulk|idle|check
       handshake: connect + TLS handshake + one request/response of --size bytes + close, repeated
       pingpong:  persistent tunnels, one --size message in flight each, echoed by the backend
       bulk:      stream through persistent tunnels; --direction down (backend source -> client, default)
                  or up (client -> backend sink); MB/s = 10^6 bytes of payload per second
       idle:      open --connections tunnels (one round trip each, --connect-concurrency at a time), print
                  {"event":"idle_established",...}, hold them until SIGTERM/SIGINT or --duration, then close
       check:     one tunnel, one round trip; {"metric":"proxy_check","result":"ok"|"refused"|...}
  --sni NAME            the service name (TLS SNI)
  --plain               plain TCP, no TLS (the direct baseline)
  --connections N (1)   concurrent connections or tunnels
  --size BYTES (64)     request/response size (handshake, pingpong, idle, check)
  --duration S (5) --warmup S (1) --threads T (1) --timeout S (5)
  --connect-concurrency K (100)   idle mode: tunnels being set up at once
  --verify-name NAME --tls 1.3|1.2|any (1.3) --label TEXT
  --ciphers LIST        wolfSSL cipher list (default: AES-128-GCM, TLS 1.3 and 1.2 ECDHE)
)";

enum class mode { handshake, pingpong, bulk, idle, check };

struct config {
    sockaddr_in server{};
    tls_options tls;
    WOLFSSL_CTX* ctx = nullptr; ///< null: plain TCP
    mode m = mode::pingpong;
    bool upload = false;
    int connections = 1;
    size_t size = 64;
    int threads = 1;
    int connect_concurrency = 100;
    uint64_t timeout_ns = 5'000'000'000ull;
    std::vector<char> message; ///< the request, a known pattern the echo must return
};

struct results {
    histogram latency;
    uint64_t ops = 0;   ///< handshakes or round trips completed in the window
    uint64_t bytes = 0; ///< bulk payload in the window
    uint64_t established = 0, failed = 0, dropped = 0;
    uint64_t err_connect = 0, err_handshake = 0, err_closed = 0, err_mismatch = 0, err_timeout = 0;
    std::string first_error, cipher;
    uint64_t errors() const { return err_connect + err_handshake + err_closed + err_mismatch + err_timeout; }
    void note(uint64_t& c, const std::string& what) {
        ++c;
        if (first_error.empty()) {
            first_error = what;
        }
    }
    void merge(const results& o) {
        latency.merge(o.latency);
        ops += o.ops, bytes += o.bytes, established += o.established, failed += o.failed, dropped += o.dropped;
        err_connect += o.err_connect, err_handshake += o.err_handshake, err_closed += o.err_closed;
        err_mismatch += o.err_mismatch, err_timeout += o.err_timeout;
        if (first_error.empty()) {
            first_error = o.first_error;
        }
        if (cipher.empty()) {
            cipher = o.cipher;
        }
    }
    std::string kinds() const {
        char b[200];
        std::snprintf(b, sizeof b, R"({"connect":%lu,"handshake":%lu,"closed":%lu,"mismatch":%lu,"timeout":%lu})",
                      err_connect, err_handshake, err_closed, err_mismatch, err_timeout);
        return b;
    }
};

struct pconn {
    enum class state { unused, connecting, handshaking, writing, reading, streaming, idle, done };
    transport t;
    state st = state::unused;
    uint32_t events = 0;
    uint64_t began = 0;   ///< connect started
    uint64_t sent_at = 0; ///< current request started
    uint64_t retry_at = 0;
    size_t out_off = 0;
    size_t in_got = 0;
};

class worker {
public:
    worker(const config& cfg, window& w, int nconn, uint64_t max_ops)
        : _cfg(cfg), _w(w), _conns(static_cast<size_t>(nconn)), _max_ops(max_ops),
          _buf(std::max<size_t>(256 * 1024, cfg.size)) {
        for (size_t i = 0; i < _buf.size(); ++i) {
            _buf[i] = static_cast<char>('a' + i % 26);
        }
    }

    results run(uint64_t deadline) {
        uint64_t now = now_ns();
        bool idle_mode = _cfg.m == mode::idle;
        if (!idle_mode && _cfg.m != mode::pingpong && _cfg.m != mode::bulk) {
            _w.ready.fetch_add(1);
            _ready = true;
        }
        if (!idle_mode) {
            for (auto& c : _conns) {
                open(c, now);
            }
        }
        epoll_event evs[512];
        while (!g_stop.load(std::memory_order_relaxed) && !_w.over(now) && now < deadline && _finished < _max_ops) {
            if (idle_mode) {
                // Keep connect_concurrency set-ups going until every tunnel was tried.
                while (_next < _conns.size() && _setting_up < static_cast<size_t>(_cfg.connect_concurrency)) {
                    open(_conns[_next++], now);
                }
            }
            int n = _poll.wait(evs, 512, _again.empty() ? 20'000'000 : 0);
            now = now_ns();
            _again_now.swap(_again);
            _again.clear();
            for (int i = 0; i < n; ++i) {
                handle(*static_cast<pconn*>(evs[i].data.ptr), evs[i].events, now);
            }
            for (auto* c : _again_now) {
                if (c->st == pconn::state::streaming) {
                    handle(*c, EPOLLIN, now);
                }
            }
            _again_now.clear();
            if (now < _next_scan) {
                continue;
            }
            _next_scan = now + 5'000'000; // retries and timeouts: every 5 ms is enough
            for (auto& c : _conns) {
                if (c.st == pconn::state::unused && !idle_mode && now >= c.retry_at && c.retry_at != 0 &&
                    _finished < _max_ops) {
                    open(c, now);
                } else if ((c.st == pconn::state::connecting || c.st == pconn::state::handshaking ||
                            ((c.st == pconn::state::writing || c.st == pconn::state::reading) &&
                             _cfg.m != mode::pingpong)) &&
                           now - c.began > _cfg.timeout_ns) {
                    fail(c, _res.err_timeout, "no answer within the timeout", now);
                }
            }
            if (!_ready) {
                bool all = true;
                if (idle_mode) {
                    all = _res.established + _res.failed == _conns.size();
                } else {
                    for (auto& c : _conns) {
                        all = all && (c.st == pconn::state::streaming || c.st == pconn::state::writing ||
                                      c.st == pconn::state::reading || c.retry_at != 0);
                    }
                }
                if (all) {
                    _ready = true;
                    _w.ready.fetch_add(1);
                }
            }
        }
        if (!_ready) {
            _w.ready.fetch_add(1);
        }
        for (auto& c : _conns) {
            c.t.close();
        }
        return std::move(_res);
    }

    bool last_ok = false;
    std::string last_error;

private:
    void open(pconn& c, uint64_t now) {
        c.began = now;
        c.retry_at = 0;
        int fd = connect_nb(_cfg.server);
        if (fd < 0) {
            fail_unopened(c, std::string("connect: ") + std::strerror(errno), now);
            return;
        }
        c.t.attach(_cfg.ctx, &_cfg.tls, fd);
        c.st = pconn::state::connecting;
        c.events = EPOLLOUT | EPOLLIN;
        _poll.add(fd, &c, c.events);
        c.out_off = c.in_got = 0;
        ++_setting_up;
    }

    void fail_unopened(pconn& c, const std::string& what, uint64_t now) {
        last_error = what;
        _res.note(_res.err_connect, what);
        ++_finished;
        if (_cfg.m == mode::idle) {
            ++_res.failed;
            c.st = pconn::state::done;
        } else {
            c.st = pconn::state::unused;
            c.retry_at = now + 10'000'000;
        }
    }

    void close_conn(pconn& c) {
        if (c.st == pconn::state::connecting || c.st == pconn::state::handshaking ||
            (_cfg.m == mode::idle && (c.st == pconn::state::writing || c.st == pconn::state::reading))) {
            --_setting_up;
        }
        _poll.del(c.t.fd());
        c.t.close();
    }

    void fail(pconn& c, uint64_t& counter, const std::string& what, uint64_t now) {
        last_error = what;
        if (_cfg.m == mode::idle && c.st == pconn::state::idle) {
            ++_res.dropped; // an established tunnel closed by the other side
            if (_res.first_error.empty()) {
                _res.first_error = "idle tunnel dropped: " + what;
            }
        } else {
            _res.note(counter, what);
            if (_cfg.m == mode::idle) {
                ++_res.failed;
            }
        }
        ++_finished;
        close_conn(c);
        if (_cfg.m == mode::idle) {
            c.st = pconn::state::done;
        } else {
            c.st = pconn::state::unused;
            c.retry_at = now + 5'000'000;
        }
    }

    void handle(pconn& c, uint32_t ev, uint64_t now) {
        if (c.st == pconn::state::connecting) {
            if (int e = connect_result(c.t.fd()); e != 0) {
                fail(c, _res.err_connect, std::string("connect: ") + std::strerror(e), now);
                return;
            }
            c.st = pconn::state::handshaking;
        }
        if (c.st == pconn::state::handshaking) {
            switch (c.t.handshake()) {
            case transport::status::done:
                if (_res.cipher.empty()) {
                    _res.cipher = c.t.cipher();
                }
                if (_cfg.m == mode::bulk) {
                    --_setting_up;
                    c.st = pconn::state::streaming;
                    set_events(_poll, c, _cfg.upload ? EPOLLIN | EPOLLOUT : EPOLLIN);
                } else {
                    c.st = pconn::state::writing;
                    c.sent_at = now;
                }
                break;
            case transport::status::want_read:
                set_events(_poll, c, EPOLLIN);
                return;
            case transport::status::want_write:
                set_events(_poll, c, EPOLLIN | EPOLLOUT);
                return;
            case transport::status::error:
                fail(c, _res.err_handshake, "handshake: " + c.t.error(), now);
                return;
            }
        }
        switch (c.st) {
        case pconn::state::writing:
            write_request(c, now);
            return;
        case pconn::state::reading:
            read_response(c, now);
            return;
        case pconn::state::streaming:
            stream(c, ev, now);
            return;
        case pconn::state::idle: {
            // Anything arriving on an idle tunnel: the other side closed it (or misbehaves).
            char b[256];
            int n = c.t.read(b, sizeof b);
            if (n < 0) {
                fail(c, _res.err_closed, c.t.error(), now);
            }
            return;
        }
        default:
            return;
        }
    }

    void write_request(pconn& c, uint64_t now) {
        while (c.out_off < _cfg.size) {
            int n = c.t.write(_cfg.message.data() + c.out_off, static_cast<int>(_cfg.size - c.out_off));
            if (n < 0) {
                fail(c, _res.err_closed, "write: " + c.t.error(), now);
                return;
            }
            if (n == 0) {
                set_events(_poll, c, EPOLLIN | EPOLLOUT);
                return;
            }
            c.out_off += static_cast<size_t>(n);
        }
        c.st = pconn::state::reading;
        c.in_got = 0;
        set_events(_poll, c, EPOLLIN);
        read_response(c, now);
    }

    void read_response(pconn& c, uint64_t now) {
        for (;;) {
            int n = c.t.read(_buf.data(), static_cast<int>(std::min(_buf.size(), _cfg.size - c.in_got + 1)));
            if (n < 0) {
                fail(c, _res.err_closed, "read: " + c.t.error(), now);
                return;
            }
            if (n == 0) {
                return;
            }
            auto got = static_cast<size_t>(n);
            if (c.in_got + got > _cfg.size || std::memcmp(_buf.data(), _cfg.message.data() + c.in_got, got) != 0) {
                fail(c, _res.err_mismatch, "the echo differs from the request", now);
                return;
            }
            c.in_got += got;
            if (c.in_got == _cfg.size) {
                round_trip_done(c, now);
                return;
            }
        }
    }

    void round_trip_done(pconn& c, uint64_t now) {
        switch (_cfg.m) {
        case mode::pingpong:
            if (_w.in(now)) {
                ++_res.ops;
                _res.latency.record(now - c.sent_at);
            }
            c.st = pconn::state::writing;
            c.out_off = 0;
            c.sent_at = now;
            write_request(c, now);
            return;
        case mode::idle:
            --_setting_up;
            ++_res.established;
            c.st = pconn::state::idle;
            c.t.trim();
            return;
        case mode::handshake:
        case mode::check:
            last_ok = true;
            if (_w.in(now)) {
                ++_res.ops;
                _res.latency.record(now - c.began);
            }
            ++_finished;
            close_conn(c);
            c.st = pconn::state::unused;
            if (_finished < _max_ops) {
                open(c, now);
            }
            return;
        case mode::bulk:
            return;
        }
    }

    void stream(pconn& c, uint32_t ev, uint64_t now) {
        if (_cfg.upload) {
            if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                int n = c.t.read(_buf.data(), static_cast<int>(_buf.size()));
                if (n < 0) {
                    fail(c, _res.err_closed, "read: " + c.t.error(), now);
                    return;
                }
            }
            // 16 KiB writes: one full TLS record each; a pending one is retried unchanged.
            constexpr int chunk = 16 * 1024;
            for (int i = 0; i < 64; ++i) {
                int n = c.t.write(_buf.data(), chunk);
                if (n < 0) {
                    fail(c, _res.err_closed, "write: " + c.t.error(), now);
                    return;
                }
                if (n == 0) {
                    break;
                }
                if (_w.in(now)) {
                    _res.bytes += static_cast<uint64_t>(n);
                }
                if (n < chunk && !c.t.tls()) {
                    break;
                }
            }
            set_events(_poll, c, EPOLLIN | EPOLLOUT);
            return;
        }
        // Bounded per event for fairness between tunnels (and so that the loop sees the end of
        // the window); bytes already received but not decrypted yet are not reported by epoll
        // again, so such a tunnel is served again right after this loop turn.
        for (int i = 0; i < 64; ++i) {
            int n = c.t.read(_buf.data(), static_cast<int>(_buf.size()));
            if (n < 0) {
                fail(c, _res.err_closed, "read: " + c.t.error(), now);
                return;
            }
            if (n == 0) {
                return;
            }
            if (_w.in(now_ns())) {
                _res.bytes += static_cast<uint64_t>(n);
            }
        }
        if (c.t.has_buffered()) {
            _again.push_back(&c);
        }
    }

    const config& _cfg;
    window& _w;
    std::vector<pconn> _conns;
    uint64_t _max_ops;
    std::vector<char> _buf;
    poller _poll;
    results _res;
    uint64_t _finished = 0;
    size_t _next = 0;
    size_t _setting_up = 0;
    uint64_t _next_scan = 0;
    std::vector<pconn*> _again;     ///< tunnels with received bytes left to read
    std::vector<pconn*> _again_now; ///< the ones being served this turn
    bool _ready = false;
};

int run(int argc, char** argv) {
    args a(argc, argv, usage,
           {"server", "ca", "cert", "key", "sni", "verify-name", "tls", "ciphers", "mode", "connections", "size",
            "duration", "warmup", "threads", "timeout", "connect-concurrency", "direction", "label"},
           {"no-client-cert", "plain"});
    install_stop_signals();
    auto nofile = raise_nofile();
    config cfg;
    cfg.server = parse_addr(a.required("server"));
    auto m = a.str("mode", "pingpong");
    if (m == "handshake") {
        cfg.m = mode::handshake;
    } else if (m == "pingpong") {
        cfg.m = mode::pingpong;
    } else if (m == "bulk") {
        cfg.m = mode::bulk;
    } else if (m == "idle") {
        cfg.m = mode::idle;
    } else if (m == "check") {
        cfg.m = mode::check;
    } else {
        a.fail("--mode " + m + ": expected handshake, pingpong, bulk, idle or check");
    }
    auto dir = a.str("direction", "down");
    if (dir != "down" && dir != "up") {
        a.fail("--direction " + dir + ": expected down or up");
    }
    cfg.upload = dir == "up";
    cfg.connections = static_cast<int>(a.integer("connections", 1, 1, 1'000'000));
    if (static_cast<uint64_t>(cfg.connections) + 64 > nofile) {
        a.fail("--connections " + std::to_string(cfg.connections) + ": above this process's open-file limit (" +
               std::to_string(nofile) + ")");
    }
    cfg.size = static_cast<size_t>(a.integer("size", 64, 1, 16 * 1024 * 1024));
    cfg.threads = std::min(static_cast<int>(a.integer("threads", 1, 1, 256)), cfg.connections);
    cfg.connect_concurrency = static_cast<int>(a.integer("connect-concurrency", 100, 1, 100000));
    cfg.timeout_ns = static_cast<uint64_t>(a.num("timeout", 5, 0.001, 3600) * 1e9);
    double duration = a.num("duration", 5, 0.01, 86400);
    double warmup = a.num("warmup", 1, 0, 3600);
    auto label = a.str("label");
    cfg.message.resize(cfg.size);
    for (size_t i = 0; i < cfg.size; ++i) {
        cfg.message[i] = static_cast<char>('a' + i % 26);
    }
    if (!a.flag("plain")) {
        cfg.tls = tls_options_from(a);
        cfg.ctx = make_client_ctx(cfg.tls);
    }

    window w;
    if (cfg.m == mode::check) {
        w.start.store(0);
        worker one(cfg, w, 1, 1);
        auto r = one.run(now_ns() + cfg.timeout_ns + 1'000'000'000ull);
        std::string result = one.last_ok      ? "ok"
                             : r.err_mismatch ? "mismatch"
                             : r.err_connect  ? "connect_failed"
                             : r.err_timeout  ? "timeout"
                                              : "refused";
        json_line()
            .add("metric", "proxy_check")
            .add("result", result)
            .add("detail", one.last_error)
            .add("cipher", r.cipher)
            .add("label", label)
            .print();
        if (cfg.ctx != nullptr) {
            wolfSSL_CTX_free(cfg.ctx);
        }
        return 0;
    }

    std::vector<results> per_thread(static_cast<size_t>(cfg.threads));
    std::vector<std::thread> threads;
    for (int i = 0; i < cfg.threads; ++i) {
        int n = cfg.connections / cfg.threads + (i < cfg.connections % cfg.threads ? 1 : 0);
        threads.emplace_back([&, i, n] {
            worker wk(cfg, w, n, UINT64_MAX);
            per_thread[static_cast<size_t>(i)] = wk.run(UINT64_MAX);
        });
    }
    double secs = 0;
    uint64_t t_begin = now_ns();
    if (cfg.m == mode::idle) {
        w.start.store(0);
        while (w.ready.load() < cfg.threads && !g_stop.load()) {
            timespec ts{0, 2'000'000};
            nanosleep(&ts, nullptr);
        }
        double setup = static_cast<double>(now_ns() - t_begin) / 1e9;
        json_line().add("event", "idle_established").add("connections", cfg.connections).add("setup_s", setup).print();
        uint64_t hold_end = now_ns() + static_cast<uint64_t>(duration * 1e9);
        while (!g_stop.load() && now_ns() < hold_end) {
            timespec ts{0, 20'000'000};
            nanosleep(&ts, nullptr);
        }
        secs = static_cast<double>(now_ns() - t_begin) / 1e9;
    } else {
        secs = run_window(w, cfg.threads, warmup, duration, 30);
    }
    g_stop.store(true);
    for (auto& t : threads) {
        t.join();
    }
    results r;
    for (auto& p : per_thread) {
        r.merge(p);
    }
    auto common = [&](json_line& l) {
        l.add("connections", cfg.connections).add("threads", cfg.threads).add("duration_s", secs);
        l.add("client_cpu_s", w.client_cpu_s);
        l.add("errors", r.errors()).add_raw("error_kinds", r.kinds());
        if (!r.first_error.empty()) {
            l.add("first_error", r.first_error);
        }
        l.add("plain", cfg.ctx == nullptr).add("cipher", r.cipher).add("label", label);
    };
    double per_s = secs > 0 ? static_cast<double>(r.ops) / secs : 0;
    switch (cfg.m) {
    case mode::handshake: {
        json_line q;
        q.add("metric", "proxy_handshake").add("value", std::round(per_s * 10) / 10).add("unit", "conn/s");
        q.add("size", static_cast<uint64_t>(cfg.size)).add("completed", r.ops);
        common(q);
        q.print();
        json_line l;
        l.add("metric", "proxy_handshake_latency").add("value", static_cast<double>(r.latency.percentile(50)) / 1e3);
        l.add("unit", "us").add_latency(r.latency);
        common(l);
        l.print();
        break;
    }
    case mode::pingpong: {
        json_line q;
        q.add("metric", "proxy_pingpong_rps").add("value", std::round(per_s)).add("unit", "round trips/s");
        q.add("size", static_cast<uint64_t>(cfg.size)).add("completed", r.ops);
        common(q);
        q.print();
        json_line l;
        l.add("metric", "proxy_pingpong_latency").add("value", static_cast<double>(r.latency.percentile(50)) / 1e3);
        l.add("unit", "us").add("size", static_cast<uint64_t>(cfg.size)).add_latency(r.latency);
        common(l);
        l.print();
        break;
    }
    case mode::bulk: {
        json_line q;
        double mbs = secs > 0 ? static_cast<double>(r.bytes) / secs / 1e6 : 0;
        q.add("metric", "proxy_bulk").add("value", std::round(mbs * 10) / 10).add("unit", "MB/s");
        q.add("direction", dir).add("bytes", r.bytes);
        common(q);
        q.print();
        break;
    }
    case mode::idle: {
        json_line q;
        q.add("metric", "idle_tunnels").add("value", r.established).add("unit", "tunnels");
        q.add("failed", r.failed).add("dropped", r.dropped).add("size", static_cast<uint64_t>(cfg.size));
        common(q);
        q.print();
        break;
    }
    case mode::check:
        break;
    }
    if (cfg.ctx != nullptr) {
        wolfSSL_CTX_free(cfg.ctx);
    }
    return 0;
}

} // namespace
} // namespace zt::bench

int main(int argc, char** argv) {
    return zt::bench::run(argc, argv);
}
