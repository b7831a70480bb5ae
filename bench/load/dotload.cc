// zt-dotload: DNS-over-TLS load generator (RFC 7858 framing) presenting a client
// certificate. Pipelined persistent connections (closed loop, or open loop at a
// fixed rate with latency taken from the intended send time), a new connection
// per query, or one checked query. One JSON line per metric on stdout.
#include "bench/load/common.hh"

#include <arpa/inet.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>

namespace zt::bench {
namespace {

constexpr std::string_view usage =
    R"(usage: zt-dotload --server HOST:PORT --ca FILE (--cert FILE --key FILE | --no-client-cert) [options]

  --mode pipeline|newconn|check   pipeline: persistent connections, M queries in flight each (default)
                                  newconn: connect + TLS handshake + 1 query + close, repeated
                                  check: one query on one connection, result as JSON
  --name NAME --type A           the query (type: A, AAAA, TXT, MX, NS, SOA, ANY or a number)
  --expect-rcode NOERROR         answers with another rcode count as errors (any: no check)
  --expect ADDRESS               answers without this A/AAAA address count as errors
  --connections N (4)            connections (newconn: concurrent handshakes)
  --inflight M (32)              queries in flight per connection (pipeline, closed loop)
  --rate R                       open loop: R queries/s in total on a fixed schedule; latency from the
                                 intended send time (no coordinated omission); at most 4096 in flight per connection
  --write-gap-us G (20)          open loop: a connection writes at most once per G us (queries come due
                                 meanwhile wait, and their wait counts in the latency); 0: one write per turn
  --duration S (5) --warmup S (1) measured window, after a warm-up on established connections
  --threads T (1)                worker threads, connections spread over them
  --timeout S (2)                an unanswered query counts as an error after S seconds
  --sni NAME --verify-name NAME  TLS SNI; check the server certificate's name
  --tls 1.3|1.2|any (1.3)
  --ciphers LIST                 wolfSSL cipher list (default: AES-128-GCM, TLS 1.3 and 1.2 ECDHE)
  --label TEXT                   copied into every result line

Output: {"metric":"dot_qps"|"dot_latency"|"dot_newconn"|"dot_newconn_latency"|"dot_check",...} lines, and
{"event":"measure_start"}/{"event":"measure_end"} at the edges of the measured window.
)";

// ---- DNS -----------------------------------------------------------------------------------------------------------

int rr_type(const std::string& t) {
    static const std::pair<const char*, int> names[] = {{"A", 1},    {"NS", 2},    {"SOA", 6},  {"MX", 15},
                                                        {"TXT", 16}, {"AAAA", 28}, {"ANY", 255}};
    for (const auto& [n, v] : names) {
        if (strcasecmp(t.c_str(), n) == 0) {
            return v;
        }
    }
    char* end = nullptr;
    long v = std::strtol(t.c_str(), &end, 10);
    return (*end == '\0' && v > 0 && v < 65536) ? static_cast<int>(v) : -1;
}

const char* rcode_name(int r) {
    static const char* names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"};
    return r >= 0 && r < 6 ? names[r] : "RCODE";
}

int rcode_value(const std::string& s) {
    for (int r = 0; r < 6; ++r) {
        if (strcasecmp(s.c_str(), rcode_name(r)) == 0) {
            return r;
        }
    }
    return s == "any" ? -1 : -2;
}

/// A framed query (2-byte length + message) whose ID sits at bytes 2-3.
std::vector<char> build_query(const std::string& name, int type) {
    std::vector<char> m = {0, 0, 0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    size_t start = 0;
    std::string n = name;
    if (!n.empty() && n.back() == '.') {
        n.pop_back();
    }
    while (start <= n.size() && !n.empty()) {
        size_t dot = n.find('.', start);
        if (dot == std::string::npos) {
            dot = n.size();
        }
        size_t len = dot - start;
        if (len == 0 || len > 63) {
            std::fprintf(stderr, "--name %s: not a domain name\n", name.c_str());
            std::exit(2);
        }
        m.push_back(static_cast<char>(len));
        m.insert(m.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
        start = dot + 1;
    }
    m.push_back(0);
    m.push_back(static_cast<char>(type >> 8));
    m.push_back(static_cast<char>(type & 0xff));
    m.push_back(0);
    m.push_back(1);
    size_t len = m.size() - 2;
    m[0] = static_cast<char>(len >> 8);
    m[1] = static_cast<char>(len & 0xff);
    return m;
}

/// Position after the name at p, or 0 when it runs past the end.
size_t skip_name(const uint8_t* m, size_t len, size_t p) {
    while (p < len) {
        uint8_t l = m[p];
        if ((l & 0xc0) == 0xc0) {
            return p + 2 <= len ? p + 2 : 0;
        }
        if (l == 0) {
            return p + 1;
        }
        p += 1 + l;
    }
    return 0;
}

/// An A or AAAA address in wire form (4 or 16 bytes; none: 0).
struct wire_address {
    uint8_t bytes[16] = {};
    uint8_t len = 0;
    bool operator==(const wire_address& o) const noexcept {
        return len == o.len && std::memcmp(bytes, o.bytes, len) == 0;
    }
    /// Text form, "" for none: only for messages (inet_ntop per answer was
    /// a tenth of the generator's CPU at a million answers a second).
    std::string text() const {
        char b[INET6_ADDRSTRLEN] = {};
        if (len == 0 || !inet_ntop(len == 4 ? AF_INET : AF_INET6, bytes, b, sizeof b)) {
            return {};
        }
        return b;
    }
};

struct parsed_answer {
    bool ok = false; ///< well-formed enough to read the header
    uint16_t id = 0;
    int rcode = 0;
    bool qr = false;
    wire_address address; ///< first A/AAAA in the answer section
    bool has_expected = false;
};

parsed_answer parse_answer(const uint8_t* m, size_t len, const wire_address& expect) {
    parsed_answer a;
    if (len < 12) {
        return a;
    }
    a.ok = true;
    a.id = static_cast<uint16_t>(m[0] << 8 | m[1]);
    a.qr = (m[2] & 0x80) != 0;
    a.rcode = m[3] & 0x0f;
    unsigned qd = m[4] << 8 | m[5];
    unsigned an = m[6] << 8 | m[7];
    size_t p = 12;
    for (unsigned i = 0; i < qd && p; ++i) {
        p = skip_name(m, len, p);
        p = (p && p + 4 <= len) ? p + 4 : 0;
    }
    for (unsigned i = 0; i < an && p; ++i) {
        p = skip_name(m, len, p);
        if (!p || p + 10 > len) {
            break;
        }
        unsigned type = m[p] << 8 | m[p + 1];
        unsigned rdlen = m[p + 8] << 8 | m[p + 9];
        p += 10;
        if (p + rdlen > len) {
            break;
        }
        if ((type == 1 && rdlen == 4) || (type == 28 && rdlen == 16)) {
            wire_address got;
            got.len = static_cast<uint8_t>(rdlen);
            std::memcpy(got.bytes, m + p, rdlen);
            if (a.address.len == 0) {
                a.address = got;
            }
            if (expect.len != 0 && got == expect) {
                a.has_expected = true;
            }
        }
        p += rdlen;
    }
    return a;
}

// ---- configuration and results -------------------------------------------------------------------------------------

struct config {
    sockaddr_in server{};
    tls_options tls;
    WOLFSSL_CTX* ctx = nullptr;
    std::vector<char> query;
    wire_address expect; ///< none: any answer will do
    int expect_rcode = 0;
    int connections = 4;
    int inflight = 32;
    double rate = 0;
    uint64_t write_gap_ns = 20'000;
    uint64_t timeout_ns = 2'000'000'000;
    int threads = 1;
};

struct errors {
    uint64_t rcode = 0, id = 0, answer = 0, timeout = 0, connect = 0, handshake = 0, closed = 0, malformed = 0;
    std::string first;
    uint64_t total() const { return rcode + id + answer + timeout + connect + handshake + closed + malformed; }
    void note(uint64_t& counter, const std::string& what) {
        ++counter;
        if (first.empty()) {
            first = what;
        }
    }
    void merge(const errors& o) {
        rcode += o.rcode, id += o.id, answer += o.answer, timeout += o.timeout, connect += o.connect;
        handshake += o.handshake, closed += o.closed, malformed += o.malformed;
        if (first.empty()) {
            first = o.first;
        }
    }
    std::string json() const {
        char b[320];
        std::snprintf(b, sizeof b,
                      R"({"rcode":%lu,"id":%lu,"answer":%lu,"timeout":%lu,"connect":%lu,"handshake":%lu,)"
                      R"("closed":%lu,"malformed":%lu})",
                      rcode, id, answer, timeout, connect, handshake, closed, malformed);
        return b;
    }
};

struct results {
    histogram latency;
    histogram lag; ///< open loop: how late each query left after its intended time (the generator's own delay)
    uint64_t ops = 0; ///< answers (pipeline) or completed connections (newconn) inside the window
    uint64_t sent = 0;
    uint64_t unanswered = 0;
    errors err;
    std::string cipher;
    void merge(const results& o) {
        latency.merge(o.latency);
        lag.merge(o.lag);
        ops += o.ops;
        sent += o.sent;
        unanswered += o.unanswered;
        err.merge(o.err);
        if (cipher.empty()) {
            cipher = o.cipher;
        }
    }
};

/// Checks one framed answer against the expectations; returns false (and counts) when wrong.
bool check_answer(const config& cfg, const parsed_answer& a, errors& err) {
    if (!a.ok || !a.qr) {
        err.note(err.malformed, "malformed answer");
        return false;
    }
    if (cfg.expect_rcode >= 0 && a.rcode != cfg.expect_rcode) {
        err.note(err.rcode, std::string("rcode ") + rcode_name(a.rcode));
        return false;
    }
    if (cfg.expect.len != 0 && !a.has_expected) {
        err.note(err.answer,
                 "answer " + (a.address.len == 0 ? std::string("(none)") : a.address.text()) + " instead of " +
                     cfg.expect.text());
        return false;
    }
    return true;
}

// ---- pipelined connections -----------------------------------------------------------------------------------------

struct pipe_conn {
    enum class state { idle, connecting, handshaking, running };
    transport t;
    state st = state::idle;
    uint32_t events = 0;
    uint64_t retry_at = 0;
    // Query slots: ID = generation << slot_bits | slot, so answers may come back in any order.
    int slot_bits = 0;
    std::vector<uint64_t> sent_at;
    std::vector<uint16_t> ids;
    std::vector<uint16_t> free_slots;
    std::vector<uint8_t> busy;
    uint32_t inflight = 0;
    uint32_t max_inflight = 0;
    // Output batch: while a TLS write is pending it must be retried unchanged.
    std::vector<char> out;
    size_t out_len = 0;
    size_t out_off = 0;
    // Decrypted input, framed by the 2-byte length.
    std::vector<char> in;
    size_t in_len = 0;
    // Open loop schedule: query k is due at t0 + k * interval.
    uint64_t t0 = 0;
    uint64_t stagger = 0;
    double interval = 0;
    uint64_t next_k = 0;
    uint64_t last_write = 0; ///< open loop: when this connection last wrote queries
    uint64_t next_timeout_scan = 0;
    bool ever_up = false;
};

class pipeline_worker {
public:
    pipeline_worker(const config& cfg, window& w, int nconn) : _cfg(cfg), _w(w), _conns(static_cast<size_t>(nconn)) {
        uint32_t cap = cfg.rate > 0 ? 4096u : static_cast<uint32_t>(std::max(cfg.inflight, 1));
        int bits = 0;
        while ((1u << bits) < cap) {
            ++bits;
        }
        double per_conn_rate = cfg.rate / std::max(1, cfg.connections);
        for (size_t i = 0; i < _conns.size(); ++i) {
            auto& c = _conns[i];
            c.slot_bits = bits;
            c.max_inflight = cap;
            size_t n = size_t{1} << bits;
            c.sent_at.assign(n, 0);
            c.ids.assign(n, 0);
            c.busy.assign(n, 0);
            for (size_t s = n; s-- > 0;) {
                c.free_slots.push_back(static_cast<uint16_t>(s));
            }
            c.out.resize(cfg.query.size() * std::min<size_t>(cap, 1024));
            c.in.resize(128 * 1024);
            if (cfg.rate > 0) {
                c.interval = 1e9 / per_conn_rate;
            }
        }
    }

    results run() {
        uint64_t start = now_ns();
        for (size_t i = 0; i < _conns.size(); ++i) {
            // Spread the connections' schedules evenly over one interval.
            _conns[i].stagger =
                static_cast<uint64_t>(_conns[i].interval * static_cast<double>(i) / static_cast<double>(_conns.size()));
            open(_conns[i], start);
        }
        epoll_event evs[256];
        bool reported_ready = false;
        while (!g_stop.load(std::memory_order_relaxed)) {
            uint64_t now = now_ns();
            if (_w.over(now)) {
                break;
            }
            uint64_t wait = 50'000'000;
            if (_cfg.rate > 0) {
                for (auto& c : _conns) {
                    if (c.st == pipe_conn::state::running) {
                        uint64_t due = c.t0 + static_cast<uint64_t>(c.interval * static_cast<double>(c.next_k));
                        due = std::max(due, c.last_write + _cfg.write_gap_ns);
                        wait = due <= now ? 0 : std::min(wait, due - now);
                    }
                }
                // Waking up takes tens of microseconds here, and a late send counts
                // as latency: sleep until 200 us before the next query is due, then poll.
                wait = wait > 200'000 ? wait - 200'000 : 0;
            }
            int n = _poll.wait(evs, 256, wait);
            now = now_ns();
            for (int i = 0; i < n; ++i) {
                handle(*static_cast<pipe_conn*>(evs[i].data.ptr), evs[i].events, now);
            }
            now = now_ns();
            bool all_up = true;
            for (auto& c : _conns) {
                if (c.st == pipe_conn::state::running) {
                    if (_cfg.rate > 0) {
                        fill(c, now);
                    }
                    if (now >= c.next_timeout_scan) {
                        scan_timeouts(c, now);
                    }
                } else if (c.st == pipe_conn::state::idle && now >= c.retry_at) {
                    open(c, now);
                }
                all_up = all_up && c.ever_up;
            }
            if (!reported_ready && (all_up || now - start > 3'000'000'000ull)) {
                reported_ready = true;
                _w.ready.fetch_add(1);
            }
        }
        if (!reported_ready) {
            _w.ready.fetch_add(1);
        }
        for (auto& c : _conns) {
            _res.unanswered += c.inflight;
            c.t.close();
        }
        return std::move(_res);
    }

private:
    void open(pipe_conn& c, uint64_t now) {
        int fd = connect_nb(_cfg.server);
        if (fd < 0) {
            _res.err.note(_res.err.connect, std::string("connect: ") + std::strerror(errno));
            c.retry_at = now + 50'000'000;
            return;
        }
        c.t.attach(_cfg.ctx, &_cfg.tls, fd);
        c.st = pipe_conn::state::connecting;
        c.events = EPOLLOUT | EPOLLIN;
        _poll.add(fd, &c, c.events);
        c.in_len = 0;
        c.out_len = c.out_off = 0;
    }

    void fail(pipe_conn& c, uint64_t& counter, const std::string& what, uint64_t now) {
        _res.err.note(counter, what);
        _poll.del(c.t.fd());
        c.t.close();
        // Queries lost with the connection.
        _res.unanswered += c.inflight;
        for (size_t s = 0; s < c.busy.size(); ++s) {
            if (c.busy[s]) {
                c.busy[s] = 0;
                c.free_slots.push_back(static_cast<uint16_t>(s));
            }
        }
        c.inflight = 0;
        c.st = pipe_conn::state::idle;
        c.retry_at = now + 50'000'000;
    }

    void handle(pipe_conn& c, uint32_t ev, uint64_t now) {
        if (c.st == pipe_conn::state::connecting) {
            if (int e = connect_result(c.t.fd()); e != 0) {
                fail(c, _res.err.connect, std::string("connect: ") + std::strerror(e), now);
                return;
            }
            c.st = pipe_conn::state::handshaking;
        }
        if (c.st == pipe_conn::state::handshaking) {
            switch (c.t.handshake()) {
            case transport::status::done:
                c.st = pipe_conn::state::running;
                c.ever_up = true;
                if (_res.cipher.empty()) {
                    _res.cipher = c.t.cipher();
                }
                if (_cfg.rate > 0 && c.next_k == 0) {
                    // The open-loop schedule starts with the first connection; after a
                    // reconnect it carries on, and the backlog counts from its intended times.
                    c.t0 = now + c.stagger;
                }
                set_events(_poll, c, EPOLLIN);
                fill(c, now);
                return;
            case transport::status::want_read:
                set_events(_poll, c, EPOLLIN);
                return;
            case transport::status::want_write:
                set_events(_poll, c, EPOLLIN | EPOLLOUT);
                return;
            case transport::status::error:
                fail(c, _res.err.handshake, "handshake: " + c.t.error(), now);
                return;
            }
        }
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            if (!receive(c, now)) {
                return;
            }
        }
        if (c.st == pipe_conn::state::running) {
            fill(c, now);
        }
    }

    /// Reads and handles every answer available; false when the connection died.
    bool receive(pipe_conn& c, uint64_t now) {
        for (;;) {
            if (c.in.size() - c.in_len < 17 * 1024) {
                c.in.resize(c.in.size() * 2);
            }
            int n = c.t.read(c.in.data() + c.in_len, static_cast<int>(c.in.size() - c.in_len));
            if (n < 0) {
                fail(c, _res.err.closed, "read: " + c.t.error(), now);
                return false;
            }
            if (n == 0) {
                return true;
            }
            c.in_len += static_cast<size_t>(n);
            size_t p = 0;
            const auto* b = reinterpret_cast<const uint8_t*>(c.in.data());
            while (c.in_len - p >= 2) {
                size_t len = static_cast<size_t>(b[p] << 8 | b[p + 1]);
                if (c.in_len - p - 2 < len) {
                    break;
                }
                on_answer(c, b + p + 2, len, now);
                p += 2 + len;
            }
            if (p > 0) {
                std::memmove(c.in.data(), c.in.data() + p, c.in_len - p);
                c.in_len -= p;
            }
        }
    }

    void on_answer(pipe_conn& c, const uint8_t* m, size_t len, uint64_t now) {
        auto a = parse_answer(m, len, _cfg.expect);
        uint32_t mask = (1u << c.slot_bits) - 1;
        uint32_t slot = a.id & mask;
        if (!a.ok || !c.busy[slot] || c.ids[slot] != a.id) {
            _res.err.note(_res.err.id, "answer with an unexpected ID");
            return;
        }
        c.busy[slot] = 0;
        c.free_slots.push_back(static_cast<uint16_t>(slot));
        --c.inflight;
        bool good = check_answer(_cfg, a, _res.err);
        if (_w.in(now)) {
            if (good) {
                ++_res.ops;
            }
            _res.latency.record(now - c.sent_at[slot]);
        }
    }

    void scan_timeouts(pipe_conn& c, uint64_t now) {
        c.next_timeout_scan = now + 100'000'000;
        for (size_t s = 0; s < c.busy.size(); ++s) {
            if (c.busy[s] && now - c.sent_at[s] > _cfg.timeout_ns && now > c.sent_at[s]) {
                c.busy[s] = 0;
                c.free_slots.push_back(static_cast<uint16_t>(s));
                --c.inflight;
                _res.err.note(_res.err.timeout, "query unanswered after the timeout");
                if (_w.in(now)) {
                    _res.latency.record(now - c.sent_at[s]);
                }
            }
        }
    }

    /// Queues what may be sent now (closed loop: up to the in-flight limit; open
    /// loop: every query whose time has come) and writes it as one TLS record.
    void fill(pipe_conn& c, uint64_t now) {
        if (c.out_len == 0 && _cfg.rate > 0 && now - c.last_write < _cfg.write_gap_ns) {
            // Writes are what the generator's CPU goes on at a high rate: one write per
            // connection per loop turn (a few queries each) left it no room to catch up
            // after a stall. The queries wait here; their latency counts from their due time.
            return;
        }
        if (c.out_len == 0) {
            const size_t qlen = _cfg.query.size();
            size_t room = c.out.size() / qlen;
            while (room > 0 && !c.free_slots.empty()) {
                uint64_t t_sent = now;
                if (_cfg.rate > 0) {
                    uint64_t due = c.t0 + static_cast<uint64_t>(c.interval * static_cast<double>(c.next_k));
                    if (due > now) {
                        break;
                    }
                    t_sent = due; // latency counts from the intended time
                    ++c.next_k;
                    if (_w.in(now)) {
                        _res.lag.record(now - due);
                    }
                } else if (c.inflight >= c.max_inflight) {
                    break;
                }
                uint16_t slot = c.free_slots.back();
                c.free_slots.pop_back();
                uint16_t gen = static_cast<uint16_t>((c.ids[slot] >> c.slot_bits) + 1);
                auto id = static_cast<uint16_t>((gen << c.slot_bits) | slot);
                c.ids[slot] = id;
                c.busy[slot] = 1;
                c.sent_at[slot] = t_sent;
                ++c.inflight;
                ++_res.sent;
                char* q = c.out.data() + c.out_len;
                std::memcpy(q, _cfg.query.data(), qlen);
                q[2] = static_cast<char>(id >> 8);
                q[3] = static_cast<char>(id & 0xff);
                c.out_len += qlen;
                --room;
            }
            c.out_off = 0;
            if (c.out_len > 0) {
                c.last_write = now;
            }
        }
        while (c.out_off < c.out_len) {
            int n = c.t.write(c.out.data() + c.out_off, static_cast<int>(c.out_len - c.out_off));
            if (n < 0) {
                fail(c, _res.err.closed, "write: " + c.t.error(), now);
                return;
            }
            if (n == 0) {
                set_events(_poll, c, EPOLLIN | EPOLLOUT);
                return;
            }
            c.out_off += static_cast<size_t>(n);
        }
        c.out_len = c.out_off = 0;
        set_events(_poll, c, EPOLLIN);
    }

    const config& _cfg;
    window& _w;
    std::vector<pipe_conn> _conns;
    poller _poll;
    results _res;
};

// ---- a new connection per query ------------------------------------------------------------------------------------

struct new_conn {
    enum class state { idle, connecting, handshaking, writing, reading };
    transport t;
    state st = state::idle;
    uint32_t events = 0;
    uint64_t began = 0;
    uint64_t retry_at = 0;
    size_t out_off = 0;
    char in[4096];
    size_t in_len = 0;
};

class newconn_worker {
public:
    newconn_worker(const config& cfg, window& w, int nconn, uint64_t max_ops)
        : _cfg(cfg), _w(w), _conns(static_cast<size_t>(nconn)), _max_ops(max_ops) {}

    results run(uint64_t deadline) {
        _w.ready.fetch_add(1);
        uint64_t now = now_ns();
        for (auto& c : _conns) {
            open(c, now);
        }
        epoll_event evs[256];
        while (!g_stop.load(std::memory_order_relaxed) && !_w.over(now) && now < deadline && _done < _max_ops) {
            int n = _poll.wait(evs, 256, 10'000'000);
            now = now_ns();
            for (int i = 0; i < n; ++i) {
                handle(*static_cast<new_conn*>(evs[i].data.ptr), now);
            }
            for (auto& c : _conns) {
                if (c.st == new_conn::state::idle && now >= c.retry_at && _done < _max_ops) {
                    open(c, now);
                }
                if (c.st != new_conn::state::idle && now - c.began > _cfg.timeout_ns) {
                    finish(c, now, &_res.err.timeout, "no answer within the timeout");
                }
            }
        }
        for (auto& c : _conns) {
            if (c.st != new_conn::state::idle) {
                ++_res.unanswered;
            }
            c.t.close();
        }
        return std::move(_res);
    }

    /// The last answer seen (check mode).
    parsed_answer last;
    std::string last_error;
    bool last_ok = false;

private:
    void open(new_conn& c, uint64_t now) {
        c.began = now;
        int fd = connect_nb(_cfg.server);
        if (fd < 0) {
            ++_done;
            last_error = std::string("connect: ") + std::strerror(errno);
            _res.err.note(_res.err.connect, last_error);
            c.retry_at = now + 10'000'000;
            return;
        }
        c.t.attach(_cfg.ctx, &_cfg.tls, fd);
        c.st = new_conn::state::connecting;
        c.events = EPOLLOUT | EPOLLIN;
        _poll.add(fd, &c, c.events);
        c.out_off = 0;
        c.in_len = 0;
    }

    /// Ends this connection: counted as an error when counter is set.
    void finish(new_conn& c, uint64_t now, uint64_t* counter, const std::string& what) {
        ++_done;
        if (counter != nullptr) {
            last_error = what;
            _res.err.note(*counter, what);
        }
        _poll.del(c.t.fd());
        c.t.close();
        c.st = new_conn::state::idle;
        c.retry_at = counter != nullptr ? now + 2'000'000 : now;
    }

    void handle(new_conn& c, uint64_t now) {
        if (c.st == new_conn::state::connecting) {
            if (int e = connect_result(c.t.fd()); e != 0) {
                finish(c, now, &_res.err.connect, std::string("connect: ") + std::strerror(e));
                return;
            }
            c.st = new_conn::state::handshaking;
        }
        if (c.st == new_conn::state::handshaking) {
            switch (c.t.handshake()) {
            case transport::status::done:
                c.st = new_conn::state::writing;
                if (_res.cipher.empty()) {
                    _res.cipher = c.t.cipher();
                }
                break;
            case transport::status::want_read:
                set_events(_poll, c, EPOLLIN);
                return;
            case transport::status::want_write:
                set_events(_poll, c, EPOLLIN | EPOLLOUT);
                return;
            case transport::status::error:
                finish(c, now, &_res.err.handshake, "handshake: " + c.t.error());
                return;
            }
        }
        if (c.st == new_conn::state::writing) {
            const auto& q = _cfg.query;
            while (c.out_off < q.size()) {
                int n = c.t.write(q.data() + c.out_off, static_cast<int>(q.size() - c.out_off));
                if (n < 0) {
                    finish(c, now, &_res.err.closed, "write: " + c.t.error());
                    return;
                }
                if (n == 0) {
                    set_events(_poll, c, EPOLLIN | EPOLLOUT);
                    return;
                }
                c.out_off += static_cast<size_t>(n);
            }
            ++_res.sent;
            c.st = new_conn::state::reading;
            set_events(_poll, c, EPOLLIN);
        }
        if (c.st == new_conn::state::reading) {
            for (;;) {
                int n = c.t.read(c.in + c.in_len, static_cast<int>(sizeof c.in - c.in_len));
                if (n < 0) {
                    finish(c, now, &_res.err.closed, "read: " + c.t.error());
                    return;
                }
                if (n == 0) {
                    return;
                }
                c.in_len += static_cast<size_t>(n);
                const auto* b = reinterpret_cast<const uint8_t*>(c.in);
                if (c.in_len >= 2) {
                    size_t len = static_cast<size_t>(b[0] << 8 | b[1]);
                    if (c.in_len - 2 >= len) {
                        last = parse_answer(b + 2, len, _cfg.expect);
                        bool good = check_answer(_cfg, last, _res.err);
                        last_ok = good;
                        if (good && _w.in(now)) {
                            ++_res.ops;
                            _res.latency.record(now - c.began);
                        }
                        finish(c, now, nullptr, {});
                        return;
                    }
                    if (c.in_len == sizeof c.in) {
                        finish(c, now, &_res.err.malformed, "answer larger than 4 KiB");
                        return;
                    }
                }
            }
        }
    }

    const config& _cfg;
    window& _w;
    std::vector<new_conn> _conns;
    poller _poll;
    results _res;
    uint64_t _max_ops;
    uint64_t _done = 0;
};

// ---- main ----------------------------------------------------------------------------------------------------------

int run(int argc, char** argv) {
    args a(argc, argv, usage, {"server",   "ca",   "cert",     "key",    "sni",          "verify-name", "tls",
                               "ciphers",  "mode", "name",     "type",   "expect-rcode", "expect",      "connections",
                               "inflight", "rate", "write-gap-us", "duration", "warmup", "threads", "timeout",
                               "label"},
           {"no-client-cert"});
    install_stop_signals();
    raise_nofile();
    config cfg;
    cfg.server = parse_addr(a.required("server"));
    cfg.tls = tls_options_from(a);
    auto mode = a.str("mode", "pipeline");
    if (mode != "pipeline" && mode != "newconn" && mode != "check") {
        a.fail("--mode " + mode + ": expected pipeline, newconn or check");
    }
    int type = rr_type(a.str("type", "A"));
    if (type < 0) {
        a.fail("--type " + a.str("type") + ": not a record type");
    }
    cfg.query = build_query(a.required("name"), type);
    cfg.expect_rcode = rcode_value(a.str("expect-rcode", "NOERROR"));
    if (cfg.expect_rcode == -2) {
        a.fail("--expect-rcode " + a.str("expect-rcode") + ": expected NOERROR, NXDOMAIN, ..., or any");
    }
    if (mode == "check") {
        cfg.expect_rcode = -1; // the check reports what came back; the harness judges it
    } else if (auto want = a.str("expect"); !want.empty()) {
        auto& e = cfg.expect;
        if (inet_pton(AF_INET, want.c_str(), e.bytes) == 1) {
            e.len = 4;
        } else if (inet_pton(AF_INET6, want.c_str(), e.bytes) == 1) {
            e.len = 16;
        } else {
            a.fail("--expect " + want + ": not an IPv4 or IPv6 address");
        }
    }
    cfg.connections = static_cast<int>(a.integer("connections", 4, 1, 100000));
    cfg.inflight = static_cast<int>(a.integer("inflight", 32, 1, 4096));
    cfg.rate = a.num("rate", 0, 0, 1e9);
    cfg.write_gap_ns = static_cast<uint64_t>(a.num("write-gap-us", 20, 0, 10000) * 1000);
    cfg.threads = static_cast<int>(a.integer("threads", 1, 1, 256));
    cfg.threads = std::min(cfg.threads, cfg.connections);
    double duration = a.num("duration", 5, 0.01, 86400);
    double warmup = a.num("warmup", 1, 0, 3600);
    double timeout = a.num("timeout", 2, 0.001, 3600);
    cfg.timeout_ns = static_cast<uint64_t>(timeout * 1e9);
    auto label = a.str("label");
    cfg.ctx = make_client_ctx(cfg.tls);

    window w;
    if (mode == "check") {
        w.start.store(0);
        newconn_worker one(cfg, w, 1, 1);
        auto r = one.run(now_ns() + cfg.timeout_ns + 1'000'000'000ull);
        json_line line;
        line.add("metric", "dot_check");
        std::string result;
        if (one.last.ok) {
            result = one.last.rcode == 0 ? (one.last.address.len == 0 ? "nodata" : "answer") : "rcode";
            line.add("result", result).add("rcode", rcode_name(one.last.rcode));
            line.add("answer", one.last.address.text());
        } else {
            result = r.err.handshake ? "handshake_failed"
                     : r.err.connect ? "connect_failed"
                     : r.err.timeout ? "timeout"
                                     : "closed";
            line.add("result", result).add("detail", one.last_error);
        }
        line.add("cipher", r.cipher).add("label", label).print();
        wolfSSL_CTX_free(cfg.ctx);
        return 0;
    }

    std::vector<results> per_thread(static_cast<size_t>(cfg.threads));
    std::vector<std::thread> threads;
    for (int i = 0; i < cfg.threads; ++i) {
        int n = cfg.connections / cfg.threads + (i < cfg.connections % cfg.threads ? 1 : 0);
        threads.emplace_back([&, i, n] {
            if (mode == "pipeline") {
                pipeline_worker wk(cfg, w, n);
                per_thread[static_cast<size_t>(i)] = wk.run();
            } else {
                newconn_worker wk(cfg, w, n, UINT64_MAX);
                per_thread[static_cast<size_t>(i)] = wk.run(UINT64_MAX);
            }
        });
    }
    double secs = run_window(w, cfg.threads, warmup, duration, 10);
    g_stop.store(true);
    for (auto& t : threads) {
        t.join();
    }
    results r;
    for (auto& p : per_thread) {
        r.merge(p);
    }
    double per_s = secs > 0 ? static_cast<double>(r.ops) / secs : 0;
    auto common = [&](json_line& l) {
        l.add("connections", cfg.connections).add("threads", cfg.threads).add("duration_s", secs);
        l.add("client_cpu_s", w.client_cpu_s);
        l.add("errors", r.err.total()).add_raw("error_kinds", r.err.json());
        if (!r.err.first.empty()) {
            l.add("first_error", r.err.first);
        }
        l.add("cipher", r.cipher).add("label", label);
    };
    if (mode == "pipeline") {
        json_line q;
        q.add("metric", "dot_qps").add("value", std::round(per_s)).add("unit", "q/s");
        q.add("inflight", cfg.rate > 0 ? 0 : cfg.inflight).add("rate", cfg.rate).add("queries", r.ops);
        q.add("sent", r.sent).add("unanswered", r.unanswered);
        common(q);
        q.print();
        json_line l;
        l.add("metric", "dot_latency").add("value", static_cast<double>(r.latency.percentile(50)) / 1000.0);
        l.add("unit", "us").add("loop", cfg.rate > 0 ? "open" : "closed").add("rate", cfg.rate);
        l.add("achieved_qps", std::round(per_s)).add("inflight", cfg.rate > 0 ? 0 : cfg.inflight);
        if (cfg.rate > 0) {
            // Latency includes this lag: when it is large, the generator was the bottleneck.
            l.add("send_lag_p50_us", static_cast<double>(r.lag.percentile(50)) / 1000.0);
            l.add("send_lag_p99_us", static_cast<double>(r.lag.percentile(99)) / 1000.0);
            l.add("write_gap_us", static_cast<double>(cfg.write_gap_ns) / 1000.0);
        }
        l.add_latency(r.latency);
        common(l);
        l.print();
    } else {
        json_line q;
        q.add("metric", "dot_newconn").add("value", std::round(per_s * 10) / 10).add("unit", "conn/s");
        q.add("completed", r.ops);
        common(q);
        q.print();
        json_line l;
        l.add("metric", "dot_newconn_latency").add("value", static_cast<double>(r.latency.percentile(50)) / 1000.0);
        l.add("unit", "us");
        l.add_latency(r.latency);
        common(l);
        l.print();
    }
    wolfSSL_CTX_free(cfg.ctx);
    return 0;
}

} // namespace
} // namespace zt::bench

int main(int argc, char** argv) {
    return zt::bench::run(argc, argv);
}
