// Shared pieces of the load generators (zt-dotload, zt-proxyload, zt-echo):
// argument parsing, clocks, the log-linear latency histogram, JSON result
// lines, non-blocking sockets and the wolfSSL client with its receive buffer.
#pragma once

#include <netinet/in.h>
#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

namespace zt::bench {

// ---- arguments ---------------------------------------------------------------------------------------------------

/// `--key value` / `--key=value` options and `--flag` switches, checked against
/// the lists the tool declares. Anything else prints the usage and exits 2.
class args {
public:
    args(int argc, char** argv, std::string_view usage, std::initializer_list<std::string_view> options,
         std::initializer_list<std::string_view> flags);

    bool has(std::string_view key) const;
    bool flag(std::string_view key) const;
    std::string str(std::string_view key, std::string_view def = {}) const;
    /// Exits with a message if the value is not a number within [lo, hi].
    double num(std::string_view key, double def, double lo, double hi) const;
    int64_t integer(std::string_view key, int64_t def, int64_t lo, int64_t hi) const;
    /// Exits with the usage if the option is missing.
    std::string required(std::string_view key) const;
    [[noreturn]] void fail(const std::string& message) const;

private:
    std::string _usage;
    std::string _tool;
    std::map<std::string, std::string, std::less<>> _values;
};

// ---- clocks and run phases -----------------------------------------------------------------------------------------

uint64_t now_ns() noexcept;

/// The measurement window every worker thread honours: work finishing in
/// [start, end) counts. Both are "never" until the main thread opens the window.
struct window {
    std::atomic<uint64_t> start{UINT64_MAX};
    std::atomic<uint64_t> end{UINT64_MAX};
    std::atomic<int> ready{0}; ///< workers whose connections are up
    double client_cpu_s = 0;   ///< this process's CPU time inside the window (set by run_window)
    bool in(uint64_t t) const noexcept {
        return t >= start.load(std::memory_order_relaxed) && t < end.load(std::memory_order_relaxed);
    }
    bool over(uint64_t t) const noexcept { return t >= end.load(std::memory_order_relaxed); }
};

/// utime + stime of this process (every thread), seconds.
double process_cpu_s();

/// Set by SIGINT/SIGTERM.
extern std::atomic<bool> g_stop;
void install_stop_signals();

/// Waits (bounded by ready_timeout_s) until `ready` reaches `workers`, then opens
/// the window after `warmup_s` for `duration_s`, printing {"event":"measure_start"}
/// and {"event":"measure_end"} lines at its edges so a harness can sample server
/// CPU time exactly around it. Returns the window length in seconds actually used.
double run_window(window& w, int workers, double warmup_s, double duration_s, double ready_timeout_s);

// ---- histogram ---------------------------------------------------------------------------------------------------

/// HDR-style log-linear histogram of nanosecond values: 128 linear sub-buckets
/// per power of two (< 0.8% relative error), up to 2^42 ns.
class histogram {
public:
    histogram();
    void record(uint64_t v) noexcept;
    void merge(const histogram& o);
    uint64_t count() const noexcept { return _total; }
    uint64_t max() const noexcept { return _max; }
    uint64_t min() const noexcept { return _total ? _min : 0; }
    double mean() const noexcept { return _total ? _sum / static_cast<double>(_total) : 0.0; }
    /// Value at percentile q (0-100).
    uint64_t percentile(double q) const noexcept;

private:
    static constexpr int sub_bits = 7;
    static constexpr uint64_t sub = uint64_t{1} << sub_bits;
    static constexpr int max_shift = 42 - sub_bits;
    std::vector<uint64_t> _counts;
    uint64_t _total = 0;
    uint64_t _min = UINT64_MAX;
    uint64_t _max = 0;
    double _sum = 0;
};

// ---- JSON lines ----------------------------------------------------------------------------------------------------

/// One result line: {"metric":...,...}; printed and flushed by print().
class json_line {
public:
    json_line& add(std::string_view key, std::string_view value);
    json_line& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
    json_line& add(std::string_view key, double value);
    json_line& add(std::string_view key, int64_t value);
    json_line& add(std::string_view key, uint64_t value);
    json_line& add(std::string_view key, int value) { return add(key, static_cast<int64_t>(value)); }
    json_line& add(std::string_view key, bool value);
    json_line& add_raw(std::string_view key, std::string_view json);
    /// p50/p90/p99/p999/p9999/max/mean in microseconds, and the curve
    /// "percentiles":[[q,us],...] for plots.
    json_line& add_latency(const histogram& h);
    void print() const;

private:
    void key(std::string_view k);
    std::string _s;
};

std::string json_escape(std::string_view s);

// ---- sockets -------------------------------------------------------------------------------------------------------

/// "127.0.0.1:853" -> sockaddr; exits with a message when it is not IPv4 host:port.
sockaddr_in parse_addr(const std::string& host_port);
/// Non-blocking TCP socket with TCP_NODELAY, connect started. -1 with errno on failure.
int connect_nb(const sockaddr_in& addr);
/// 0 when the connect completed, else the socket error.
int connect_result(int fd);
/// Raises RLIMIT_NOFILE to its hard limit; returns the new soft limit.
uint64_t raise_nofile();

/// An epoll instance; events carry a pointer. wait() has a nanosecond timeout.
class poller {
public:
    poller();
    ~poller();
    poller(const poller&) = delete;
    poller& operator=(const poller&) = delete;
    void add(int fd, void* ptr, uint32_t events);
    void mod(int fd, void* ptr, uint32_t events);
    void del(int fd);
    /// Number of events (0 on timeout or EINTR).
    int wait(epoll_event* events, int max, uint64_t timeout_ns);

private:
    int _fd;
};

/// Asks epoll for `ev` on connection `c` (with `c.t.fd()` and `c.events`), when that is a change.
template <typename Conn>
void set_events(poller& p, Conn& c, uint32_t ev) {
    if (ev != c.events) {
        p.mod(c.t.fd(), &c, ev);
        c.events = ev;
    }
}

// ---- TLS client ----------------------------------------------------------------------------------------------------

struct tls_options {
    std::string ca;
    std::string cert;
    std::string key;
    bool client_cert = true;
    std::string sni;         ///< empty: no SNI
    std::string verify_name; ///< empty: the chain is verified, the name is not
    int version = 0;         ///< 13, 12, or 0 for "1.2 or 1.3"
    /// wolfSSL cipher list; AES-128-GCM by default, so every peer runs the cipher
    /// that `openssl speed -evp aes-128-gcm` measures.
    std::string ciphers = "TLS13-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
};

/// Reads the TLS options every load generator shares (--ca --cert --key
/// --no-client-cert --sni --verify-name --tls --ciphers).
tls_options tls_options_from(const args& a);

/// Receive buffer between the socket and wolfSSL: one recv() fills it, wolfSSL
/// takes record headers and bodies from it (it asks for them one at a time,
/// which would otherwise be two syscalls per record).
struct sock_io {
    int fd = -1;
    char* buf = nullptr;
    uint32_t head = 0;
    uint32_t tail = 0;
    static constexpr uint32_t cap = 64 * 1024;
    ~sock_io();
    /// Frees the buffer when it holds nothing (idle tunnels).
    void trim() noexcept;
};

/// A client connection's byte stream: TLS (wolfSSL over sock_io) or plain TCP.
class transport {
public:
    transport() = default;
    ~transport();
    transport(const transport&) = delete;
    transport& operator=(const transport&) = delete;

    enum class status { done, want_read, want_write, error };

    /// ctx may be null: plain TCP.
    bool attach(WOLFSSL_CTX* ctx, const tls_options* opt, int fd);
    status handshake();
    /// >0 bytes, 0 would block, -1 closed or error (see error()).
    int read(char* buf, int len);
    /// Bytes written (TLS: all or 0), 0 would block (TLS: call again with the
    /// same buffer and length), -1 error. want_write() says whether to poll for POLLOUT.
    int write(const char* buf, int len);
    bool want_write() const noexcept { return _want_write; }
    /// Sends close_notify (TLS, best effort) and closes the socket.
    void close();
    int fd() const noexcept { return _io.fd; }
    bool tls() const noexcept { return _ssl != nullptr; }
    const std::string& error() const noexcept { return _error; }
    std::string cipher() const;
    void trim() noexcept { _io.trim(); }
    /// Received bytes not handed out yet (the socket may be drained while these wait).
    bool has_buffered() const noexcept { return _io.head < _io.tail || (_ssl != nullptr && wolfSSL_pending(_ssl) > 0); }

private:
    void set_error(int ret);
    WOLFSSL* _ssl = nullptr;
    sock_io _io;
    bool _want_write = false;
    std::string _error;
};

/// wolfSSL client context from the options; exits with a message on error.
WOLFSSL_CTX* make_client_ctx(const tls_options& opt);

} // namespace zt::bench
