// Shared pieces of the load generators; see common.hh.
#include "bench/load/common.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfio.h>

namespace zt::bench {

std::atomic<bool> g_stop{false};

// ---- arguments ---------------------------------------------------------------------------------------------------

args::args(int argc, char** argv, std::string_view usage, std::initializer_list<std::string_view> options,
           std::initializer_list<std::string_view> flags)
    : _usage(usage) {
    std::string_view tool = argc > 0 ? argv[0] : "load";
    if (auto slash = tool.rfind('/'); slash != std::string_view::npos) {
        tool.remove_prefix(slash + 1);
    }
    _tool = std::string(tool);
    auto known = [](std::initializer_list<std::string_view> list, std::string_view k) {
        for (auto x : list) {
            if (x == k) {
                return true;
            }
        }
        return false;
    };
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            std::fputs(_usage.c_str(), stdout);
            std::exit(0);
        }
        if (a.substr(0, 2) != "--") {
            fail("unexpected argument " + std::string(a));
        }
        a.remove_prefix(2);
        std::string key(a), value;
        bool has_value = false;
        if (auto eq = a.find('='); eq != std::string_view::npos) {
            key = std::string(a.substr(0, eq));
            value = std::string(a.substr(eq + 1));
            has_value = true;
        }
        if (known(flags, key)) {
            if (has_value) {
                fail("--" + key + " takes no value");
            }
            _values[key] = "1";
        } else if (known(options, key)) {
            if (!has_value) {
                if (i + 1 >= argc) {
                    fail("--" + key + " needs a value");
                }
                value = argv[++i];
            }
            _values[key] = value;
        } else {
            fail("unknown option --" + key);
        }
    }
}

void args::fail(const std::string& message) const {
    std::fprintf(stderr, "%s: %s\n\n%s", _tool.c_str(), message.c_str(), _usage.c_str());
    std::exit(2);
}

bool args::has(std::string_view key) const {
    return _values.find(key) != _values.end();
}

bool args::flag(std::string_view key) const {
    return has(key);
}

std::string args::str(std::string_view key, std::string_view def) const {
    auto it = _values.find(key);
    return it == _values.end() ? std::string(def) : it->second;
}

std::string args::required(std::string_view key) const {
    auto it = _values.find(key);
    if (it == _values.end() || it->second.empty()) {
        fail("--" + std::string(key) + " is required");
    }
    return it->second;
}

double args::num(std::string_view key, double def, double lo, double hi) const {
    auto it = _values.find(key);
    if (it == _values.end()) {
        return def;
    }
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(it->second.c_str(), &end);
    if (errno != 0 || end == it->second.c_str() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi) {
        fail("--" + std::string(key) + " " + it->second + ": not a number in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]");
    }
    return v;
}

int64_t args::integer(std::string_view key, int64_t def, int64_t lo, int64_t hi) const {
    auto it = _values.find(key);
    if (it == _values.end()) {
        return def;
    }
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(it->second.c_str(), &end, 10);
    if (errno != 0 || end == it->second.c_str() || *end != '\0' || v < lo || v > hi) {
        fail("--" + std::string(key) + " " + it->second + ": not an integer in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "]");
    }
    return v;
}

// ---- clocks and phases -------------------------------------------------------------------------------------------

uint64_t now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

void on_stop_signal(int) {
    g_stop.store(true);
}

void sleep_until(uint64_t t) {
    while (!g_stop.load()) {
        uint64_t n = now_ns();
        if (n >= t) {
            return;
        }
        uint64_t d = std::min<uint64_t>(t - n, 20'000'000);
        timespec ts{static_cast<time_t>(d / 1'000'000'000u), static_cast<long>(d % 1'000'000'000u)};
        nanosleep(&ts, nullptr);
    }
}

} // namespace

double process_cpu_s() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; };
    return sec(ru.ru_utime) + sec(ru.ru_stime);
}

void install_stop_signals() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

double run_window(window& w, int workers, double warmup_s, double duration_s, double ready_timeout_s) {
    uint64_t deadline = now_ns() + static_cast<uint64_t>(ready_timeout_s * 1e9);
    while (w.ready.load() < workers && now_ns() < deadline && !g_stop.load()) {
        timespec ts{0, 1'000'000};
        nanosleep(&ts, nullptr);
    }
    if (w.ready.load() < workers) {
        json_line().add("event", "ready_timeout").add("ready", w.ready.load()).add("workers", workers).print();
    }
    uint64_t start = now_ns() + static_cast<uint64_t>(warmup_s * 1e9);
    uint64_t end = start + static_cast<uint64_t>(duration_s * 1e9);
    w.end.store(end);
    w.start.store(start);
    sleep_until(start);
    double cpu0 = process_cpu_s();
    json_line().add("event", "measure_start").print();
    sleep_until(end);
    w.client_cpu_s = process_cpu_s() - cpu0;
    uint64_t t = now_ns();
    if (t < end) { // stopped by a signal: close the window now
        w.end.store(t);
        end = t;
    }
    json_line().add("event", "measure_end").print();
    return end > start ? static_cast<double>(end - start) / 1e9 : 0.0;
}

// ---- histogram ---------------------------------------------------------------------------------------------------

histogram::histogram() : _counts((max_shift + 2) * sub, 0) {}

void histogram::record(uint64_t v) noexcept {
    size_t idx;
    if (v < sub) {
        idx = v;
    } else {
        int e = 63 - __builtin_clzll(v);
        int shift = e - sub_bits;
        if (shift > max_shift) {
            idx = _counts.size() - 1;
        } else {
            idx = static_cast<size_t>(shift) * sub + (v >> shift);
        }
    }
    ++_counts[idx];
    ++_total;
    _sum += static_cast<double>(v);
    _min = std::min(_min, v);
    _max = std::max(_max, v);
}

void histogram::merge(const histogram& o) {
    for (size_t i = 0; i < _counts.size(); ++i) {
        _counts[i] += o._counts[i];
    }
    _total += o._total;
    _sum += o._sum;
    _min = std::min(_min, o._min);
    _max = std::max(_max, o._max);
}

uint64_t histogram::percentile(double q) const noexcept {
    if (_total == 0) {
        return 0;
    }
    if (q >= 100.0) {
        return _max;
    }
    auto target = static_cast<uint64_t>(std::ceil(q / 100.0 * static_cast<double>(_total)));
    target = std::max<uint64_t>(target, 1);
    uint64_t seen = 0;
    for (size_t i = 0; i < _counts.size(); ++i) {
        seen += _counts[i];
        if (seen >= target) {
            uint64_t mid;
            if (i < sub) {
                mid = i;
            } else {
                uint64_t shift = i / sub - 1;
                uint64_t m = i % sub + sub;
                uint64_t lo = m << shift;
                uint64_t hi = ((m + 1) << shift) - 1;
                mid = lo + (hi - lo) / 2;
            }
            return std::clamp(mid, _min, _max);
        }
    }
    return _max;
}

// ---- JSON ----------------------------------------------------------------------------------------------------------

std::string json_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char b[8];
                std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
                out += b;
            } else {
                out += c;
            }
        }
    }
    out += '"';
    return out;
}

void json_line::key(std::string_view k) {
    _s += _s.empty() ? "{" : ",";
    _s += json_escape(k);
    _s += ':';
}

json_line& json_line::add(std::string_view k, std::string_view value) {
    key(k);
    _s += json_escape(value);
    return *this;
}

json_line& json_line::add(std::string_view k, double value) {
    key(k);
    if (!std::isfinite(value)) {
        _s += "null";
    } else {
        char b[64];
        std::snprintf(b, sizeof b, "%.10g", value);
        _s += b;
    }
    return *this;
}

json_line& json_line::add(std::string_view k, int64_t value) {
    key(k);
    _s += std::to_string(value);
    return *this;
}

json_line& json_line::add(std::string_view k, uint64_t value) {
    key(k);
    _s += std::to_string(value);
    return *this;
}

json_line& json_line::add(std::string_view k, bool value) {
    key(k);
    _s += value ? "true" : "false";
    return *this;
}

json_line& json_line::add_raw(std::string_view k, std::string_view json) {
    key(k);
    _s += json;
    return *this;
}

json_line& json_line::add_latency(const histogram& h) {
    auto us = [](uint64_t ns) { return std::round(static_cast<double>(ns) / 10.0) / 100.0; };
    add("samples", h.count());
    add("mean_us", std::round(h.mean() / 10.0) / 100.0);
    add("min_us", us(h.min()));
    add("p50_us", us(h.percentile(50)));
    add("p90_us", us(h.percentile(90)));
    add("p99_us", us(h.percentile(99)));
    add("p999_us", us(h.percentile(99.9)));
    add("p9999_us", us(h.percentile(99.99)));
    add("max_us", us(h.max()));
    static constexpr double qs[] = {0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100};
    std::string curve = "[";
    for (double q : qs) {
        char b[64];
        std::snprintf(b, sizeof b, "%s[%g,%.2f]", curve.size() > 1 ? "," : "", q,
                      static_cast<double>(q == 0 ? h.min() : h.percentile(q)) / 1000.0);
        curve += b;
    }
    curve += "]";
    return add_raw("percentiles", curve);
}

void json_line::print() const {
    std::string line = _s.empty() ? "{}" : _s + "}";
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
}

// ---- sockets -------------------------------------------------------------------------------------------------------

sockaddr_in parse_addr(const std::string& host_port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    auto colon = host_port.rfind(':');
    char* end = nullptr;
    long port = colon == std::string::npos ? -1 : std::strtol(host_port.c_str() + colon + 1, &end, 10);
    if (colon == std::string::npos || port <= 0 || port > 65535 || *end != '\0' ||
        inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
        std::fprintf(stderr, "%s: not an IPv4 host:port\n", host_port.c_str());
        std::exit(2);
    }
    sa.sin_port = htons(static_cast<uint16_t>(port));
    return sa;
}

int connect_nb(const sockaddr_in& addr) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
        int e = errno;
        ::close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int connect_result(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        return errno;
    }
    return err;
}

uint64_t raise_nofile() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

// ---- TLS -----------------------------------------------------------------------------------------------------------

tls_options tls_options_from(const args& a) {
    tls_options o;
    o.ca = a.str("ca");
    o.cert = a.str("cert");
    o.key = a.str("key");
    o.client_cert = !a.flag("no-client-cert");
    o.sni = a.str("sni");
    o.verify_name = a.str("verify-name");
    if (a.has("ciphers")) {
        o.ciphers = a.str("ciphers");
    }
    auto v = a.str("tls", "1.3");
    if (v == "1.3") {
        o.version = 13;
    } else if (v == "1.2") {
        o.version = 12;
    } else if (v == "any") {
        o.version = 0;
    } else {
        a.fail("--tls " + v + ": expected 1.3, 1.2 or any");
    }
    return o;
}

namespace {

int recv_cb(WOLFSSL*, char* out, int sz, void* ctx) {
    auto* io = static_cast<sock_io*>(ctx);
    if (io->head == io->tail) {
        if (io->buf == nullptr) {
            io->buf = static_cast<char*>(std::malloc(sock_io::cap));
            if (io->buf == nullptr) {
                return WOLFSSL_CBIO_ERR_GENERAL;
            }
        }
        io->head = io->tail = 0;
        ssize_t n = ::recv(io->fd, io->buf, sock_io::cap, 0);
        if (n == 0) {
            return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return WOLFSSL_CBIO_ERR_WANT_READ;
            }
            if (errno == EINTR) {
                return WOLFSSL_CBIO_ERR_ISR;
            }
            if (errno == ECONNRESET) {
                return WOLFSSL_CBIO_ERR_CONN_RST;
            }
            return WOLFSSL_CBIO_ERR_GENERAL;
        }
        io->tail = static_cast<uint32_t>(n);
    }
    uint32_t n = std::min<uint32_t>(static_cast<uint32_t>(sz), io->tail - io->head);
    std::memcpy(out, io->buf + io->head, n);
    io->head += n;
    return static_cast<int>(n);
}

std::string wolf_error(int err) {
    char b[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n(static_cast<unsigned long>(err), b, sizeof b);
    return std::to_string(err) + " " + b;
}

} // namespace

sock_io::~sock_io() {
    std::free(buf);
}

void sock_io::trim() noexcept {
    if (head == tail && buf != nullptr) {
        std::free(buf);
        buf = nullptr;
        head = tail = 0;
    }
}

WOLFSSL_CTX* make_client_ctx(const tls_options& opt) {
    static bool initialized = [] { return wolfSSL_Init() == WOLFSSL_SUCCESS; }();
    if (!initialized) {
        std::fprintf(stderr, "wolfSSL_Init failed\n");
        std::exit(1);
    }
    WOLFSSL_METHOD* method = opt.version == 13   ? wolfTLSv1_3_client_method()
                             : opt.version == 12 ? wolfTLSv1_2_client_method()
                                                 : wolfSSLv23_client_method();
    WOLFSSL_CTX* ctx = wolfSSL_CTX_new(method);
    auto die = [&](const std::string& what) {
        std::fprintf(stderr, "TLS setup: %s\n", what.c_str());
        std::exit(2);
    };
    if (ctx == nullptr) {
        die("wolfSSL_CTX_new failed");
    }
    if (opt.ca.empty()) {
        die("--ca is required (the server is always verified)");
    }
    if (wolfSSL_CTX_load_verify_locations(ctx, opt.ca.c_str(), nullptr) != WOLFSSL_SUCCESS) {
        die("cannot load CA file " + opt.ca);
    }
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, nullptr);
    if (!opt.ciphers.empty() && wolfSSL_CTX_set_cipher_list(ctx, opt.ciphers.c_str()) != WOLFSSL_SUCCESS) {
        die("--ciphers " + opt.ciphers + ": not a wolfSSL cipher list");
    }
    if (opt.client_cert) {
        if (opt.cert.empty() || opt.key.empty()) {
            die("--cert and --key are required (or --no-client-cert)");
        }
        if (wolfSSL_CTX_use_certificate_chain_file(ctx, opt.cert.c_str()) != WOLFSSL_SUCCESS) {
            die("cannot load client certificate " + opt.cert);
        }
        if (wolfSSL_CTX_use_PrivateKey_file(ctx, opt.key.c_str(), WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
            die("cannot load client key " + opt.key);
        }
    }
    wolfSSL_CTX_SetIORecv(ctx, recv_cb);
    return ctx;
}

transport::~transport() {
    close();
}

bool transport::attach(WOLFSSL_CTX* ctx, const tls_options* opt, int fd) {
    _io.fd = fd;
    _io.head = _io.tail = 0;
    _want_write = false;
    _error.clear();
    if (ctx == nullptr) {
        return true;
    }
    _ssl = wolfSSL_new(ctx);
    if (_ssl == nullptr) {
        _error = "wolfSSL_new failed";
        return false;
    }
    wolfSSL_set_fd(_ssl, fd);
    wolfSSL_SetIOReadCtx(_ssl, &_io);
    if (opt != nullptr && !opt->sni.empty()) {
        wolfSSL_UseSNI(_ssl, WOLFSSL_SNI_HOST_NAME, opt->sni.data(), static_cast<unsigned short>(opt->sni.size()));
    }
    if (opt != nullptr && !opt->verify_name.empty()) {
        wolfSSL_check_domain_name(_ssl, opt->verify_name.c_str());
    }
    return true;
}

void transport::set_error(int ret) {
    int err = wolfSSL_get_error(_ssl, ret);
    if (err == WOLFSSL_ERROR_ZERO_RETURN || err == SOCKET_PEER_CLOSED_E) {
        _error = "closed by peer";
    } else if (err == SOCKET_ERROR_E && errno == ECONNRESET) {
        _error = "connection reset";
    } else {
        _error = wolf_error(err);
    }
}

transport::status transport::handshake() {
    if (_ssl == nullptr) {
        return status::done;
    }
    int ret = wolfSSL_connect(_ssl);
    if (ret == WOLFSSL_SUCCESS) {
        _want_write = false;
        return status::done;
    }
    int err = wolfSSL_get_error(_ssl, ret);
    if (err == WOLFSSL_ERROR_WANT_READ) {
        _want_write = false;
        return status::want_read;
    }
    if (err == WOLFSSL_ERROR_WANT_WRITE) {
        _want_write = true;
        return status::want_write;
    }
    set_error(ret);
    return status::error;
}

int transport::read(char* buf, int len) {
    if (_ssl == nullptr) {
        ssize_t n = ::recv(_io.fd, buf, static_cast<size_t>(len), 0);
        if (n > 0) {
            return static_cast<int>(n);
        }
        if (n == 0) {
            _error = "closed by peer";
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return 0;
        }
        _error = std::strerror(errno);
        return -1;
    }
    int ret = wolfSSL_read(_ssl, buf, len);
    if (ret > 0) {
        return ret;
    }
    int err = wolfSSL_get_error(_ssl, ret);
    if (err == WOLFSSL_ERROR_WANT_READ) {
        return 0;
    }
    if (err == WOLFSSL_ERROR_WANT_WRITE) {
        _want_write = true;
        return 0;
    }
    set_error(ret);
    return -1;
}

int transport::write(const char* buf, int len) {
    if (_ssl == nullptr) {
        ssize_t n = ::send(_io.fd, buf, static_cast<size_t>(len), MSG_NOSIGNAL);
        if (n >= 0) {
            _want_write = n < len;
            return static_cast<int>(n);
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            _want_write = true;
            return 0;
        }
        _error = std::strerror(errno);
        return -1;
    }
    int ret = wolfSSL_write(_ssl, buf, len);
    if (ret > 0) {
        _want_write = false;
        return ret;
    }
    int err = wolfSSL_get_error(_ssl, ret);
    if (err == WOLFSSL_ERROR_WANT_WRITE || err == WOLFSSL_ERROR_WANT_READ) {
        _want_write = err == WOLFSSL_ERROR_WANT_WRITE;
        return 0;
    }
    set_error(ret);
    return -1;
}

void transport::close() {
    if (_ssl != nullptr) {
        if (wolfSSL_is_init_finished(_ssl)) {
            wolfSSL_shutdown(_ssl); // close_notify, best effort: never waits for the peer's
        }
        wolfSSL_free(_ssl);
        _ssl = nullptr;
    }
    if (_io.fd >= 0) {
        ::close(_io.fd);
        _io.fd = -1;
    }
    _io.head = _io.tail = 0;
    _io.trim();
    _want_write = false;
}

std::string transport::cipher() const {
    if (_ssl == nullptr) {
        return "plain";
    }
    const char* v = wolfSSL_get_version(_ssl);
    const char* c = wolfSSL_get_cipher_name(_ssl);
    return std::string(v ? v : "?") + " " + (c ? c : "?");
}

// ---- epoll
// -----------------------------------------------------------------------------------------------------------

poller::poller() : _fd(epoll_create1(EPOLL_CLOEXEC)) {
    if (_fd < 0) {
        std::perror("epoll_create1");
        std::exit(1);
    }
}

poller::~poller() {
    ::close(_fd);
}

void poller::add(int fd, void* ptr, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = ptr;
    epoll_ctl(_fd, EPOLL_CTL_ADD, fd, &ev);
}

void poller::mod(int fd, void* ptr, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = ptr;
    epoll_ctl(_fd, EPOLL_CTL_MOD, fd, &ev);
}

void poller::del(int fd) {
    epoll_ctl(_fd, EPOLL_CTL_DEL, fd, nullptr);
}

int poller::wait(epoll_event* events, int max, uint64_t timeout_ns) {
    timespec ts{static_cast<time_t>(timeout_ns / 1'000'000'000u), static_cast<long>(timeout_ns % 1'000'000'000u)};
    int n = epoll_pwait2(_fd, events, max, &ts, nullptr);
    return n < 0 ? 0 : n;
}

} // namespace zt::bench
