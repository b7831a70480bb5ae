// The proxy's kTLS fast path end to end, run inside the test VM by
// tests/vm/proxy_ktls (tests/e2e/proxy_ktls_vm_test.sh drives it):
//   tunnel_check backends ECHO_PORT COUNT_PORT CLOSE_PORT
//       plain TCP services on 127.0.0.1: echo (echoes, half-closes after the
//       client's EOF), count (reads to EOF, answers "N\n", closes), close
//       (sends close_bytes of a pattern at once, then closes first).
//   tunnel_check client PROXY_PORT BUNDLE_DIR CASE NAME [MIB]
//       one case through ztdns-dataplane: wolfSSL through common/tls with the
//       bundle's client certificate, SNI = NAME, the proxy's certificate
//       verified against the bundle's CA and for NAME. Prints one
//       "ok CASE: ..." or "not ok CASE: ..." line; exit status 1 on failure.
// Static (like ktls_selftest): the VM has no shared libraries for it.
#include "common/tls/tls.hh"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace zt;

namespace {

constexpr uint64_t close_seed = 7;             ///< the close service's stream
constexpr size_t close_bytes = (1 << 20) + 13; ///< what the close service sends before closing

struct failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void expect(bool ok, const std::string& what) {
    if (!ok) {
        throw failure(what);
    }
}

std::string errno_str(int e) {
    return fmt::format("{} ({})", strerrorname_np(e) ? strerrorname_np(e) : "?", e);
}

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
    return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// A deterministic byte stream (xorshift64), produced and checked in pieces
/// of any size, so 32 MiB need not be held in memory.
class stream {
public:
    explicit stream(uint64_t seed) : _x(seed * 0x9E3779B97F4A7C15ull | 1) {}
    void fill(std::byte* p, size_t n) noexcept {
        for (size_t i = 0; i < n; ++i) {
            if (_left == 0) {
                _x ^= _x << 13;
                _x ^= _x >> 7;
                _x ^= _x << 17;
                _word = _x;
                _left = 8;
            }
            p[i] = static_cast<std::byte>(_word);
            _word >>= 8;
            --_left;
        }
    }

private:
    uint64_t _x;
    uint64_t _word = 0;
    int _left = 0;
};

/// FNV-1a, continued over pieces.
struct fnv {
    uint64_t h = 0xcbf29ce484222325ull;
    void add(const std::byte* p, size_t n) noexcept {
        for (size_t i = 0; i < n; ++i) {
            h = (h ^ static_cast<uint8_t>(p[i])) * 0x100000001b3ull;
        }
    }
};

std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    expect(f.good(), "cannot read " + path);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

int listen_on(uint16_t port) {
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    expect(l >= 0 && ::bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && ::listen(l, 64) == 0,
           fmt::format("listen on 127.0.0.1:{}: {}", port, errno_str(errno)));
    return l;
}

// ---- the services ------------------------------------------------------------------------------

bool write_all(int fd, const std::byte* p, size_t n) {
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

void serve_echo(int fd) {
    std::vector<std::byte> buf(64 * 1024);
    for (;;) {
        ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0 || !write_all(fd, buf.data(), static_cast<size_t>(r))) {
            break;
        }
    }
    ::shutdown(fd, SHUT_WR); // the client's EOF, passed on after the last echoed byte
    ::close(fd);
}

void serve_count(int fd) {
    std::vector<std::byte> buf(64 * 1024);
    uint64_t total = 0;
    for (;;) {
        ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        total += static_cast<uint64_t>(r);
    }
    std::string answer = fmt::format("{}\n", total);
    write_all(fd, reinterpret_cast<const std::byte*>(answer.data()), answer.size());
    ::close(fd);
}

void serve_close(int fd) {
    std::vector<std::byte> data(close_bytes);
    stream(close_seed).fill(data.data(), data.size());
    write_all(fd, data.data(), data.size());
    ::close(fd); // the service closes first
}

int run_backends(uint16_t echo_port, uint16_t count_port, uint16_t close_port) {
    struct service {
        uint16_t port;
        void (*serve)(int);
    };
    std::vector<std::thread> listeners;
    for (service s :
         {service{echo_port, serve_echo}, service{count_port, serve_count}, service{close_port, serve_close}}) {
        int l = listen_on(s.port);
        listeners.emplace_back([l, s] {
            for (;;) {
                int fd = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) {
                    continue;
                }
                std::thread(s.serve, fd).detach();
            }
        });
    }
    std::printf("# backends listening: echo %u, count %u, close %u\n", echo_port, count_port, close_port);
    std::fflush(stdout);
    for (auto& t : listeners) {
        t.join();
    }
    return 0;
}

// ---- the client ----------------------------------------------------------------------------------

/// What a case wants from its client.
struct client_options {
    const char* ciphers = nullptr; ///< wolfSSL cipher list, or the context's default
    bool tls12 = false;            ///< WOLFSSL_OP_NO_TLSv1_3 (not wolfSSL_SetVersion)
};

/// A mutual-TLS client over a non-blocking socket: common/tls encrypts into
/// `out` and decrypts from `in`; this struct moves the bytes and never lets
/// wolfSSL near the socket.
class client {
public:
    client(uint16_t port, const std::string& bundle, const std::string& name, const client_options& o)
        : _deadline(clock_type::now() + std::chrono::seconds(50)) {
        std::string err;
        tls::context_options co;
        co.server = false;
        co.cert_pem = read_text(bundle + "/cert.pem");
        co.key_pem = read_text(bundle + "/key.pem");
        co.ca_pem = read_text(bundle + "/ca.crt");
        co.allow_tls12 = true;
        _ctx = tls::context::create(co, err);
        expect(_ctx.valid(), "client context: " + err);
        _fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons(port);
        expect(_fd >= 0 && ::connect(_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0,
               fmt::format("connect to the proxy on 127.0.0.1:{}: {}", port, errno_str(errno)));
        int one = 1;
        ::setsockopt(_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::fcntl(_fd, F_SETFL, ::fcntl(_fd, F_GETFL) | O_NONBLOCK);
        expect(_s.start(_ctx, &_out, name), "client session");
        WOLFSSL* ssl = _s.raw();
        // The proxy's certificate must name the private name, not only chain to the CA.
        expect(wolfSSL_check_domain_name(ssl, name.c_str()) == WOLFSSL_SUCCESS, "wolfSSL_check_domain_name");
        if (o.tls12) {
            wolfSSL_set_options(ssl, WOLFSSL_OP_NO_TLSv1_3);
        }
        if (o.ciphers) {
            expect(wolfSSL_set_cipher_list(ssl, o.ciphers) == WOLFSSL_SUCCESS,
                   fmt::format("wolfSSL_set_cipher_list {}", o.ciphers));
        }
    }
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    ~client() {
        _s.reset();
        if (_fd >= 0) {
            ::close(_fd);
        }
    }

    /// The handshake. With `hold`, the last flight (the client's Finished)
    /// stays in the output buffer, so what is written next leaves in the
    /// same send: the proxy finds records after the Finished in its buffer.
    void handshake(bool hold) {
        for (;;) {
            tls::status st = drive([&] { return _s.handshake(); });
            if (st == tls::status::done) {
                break;
            }
            expect(st == tls::status::want_read || st == tls::status::want_write,
                   fmt::format("handshake failed: {}", _s.error_string()));
            flush_all();
            if (st == tls::status::want_read) {
                wait_input("handshake");
            }
        }
        if (!hold) {
            flush_all();
        }
    }
    std::string suite() const { return fmt::format("{} {}", _s.version(), _s.cipher()); }
    WOLFSSL* ssl() const { return _s.raw(); }

    /// Encrypts `n` bytes in records of `record` bytes into the output buffer (not sent yet).
    void write(stream& up, fnv& sum, size_t n, size_t record) {
        std::vector<std::byte> chunk(record);
        while (n > 0) {
            size_t k = std::min(n, record);
            expect(_out.capacity - _out.length >= k + 1024, "output buffer full");
            up.fill(chunk.data(), k);
            sum.add(chunk.data(), k);
            size_t done = 0;
            tls::status st = drive([&] { return _s.write({chunk.data(), k}, done); });
            expect(st == tls::status::done && done == k, fmt::format("wolfSSL write: {}", _s.error_string()));
            n -= k;
        }
    }

    /// What one exchange sends and expects.
    struct plan {
        uint64_t up_bytes = 0; ///< stream `up_seed`, in records of `record` bytes
        uint64_t up_seed = 1;
        size_t record = 16384;
        bool echo = false;       ///< expect the up stream back
        uint64_t down_bytes = 0; ///< else: this many bytes of stream `down_seed`
        uint64_t down_seed = 0;
        std::string down_text;         ///< else: exactly this text
        bool close_after_send = false; ///< close_notify + FIN once everything is sent
        bool hold_fin = false;         ///< ... but the FIN only in finish(), after the answer
        bool expect_close = false;     ///< close_notify, then EOF, after the expected bytes
    };
    struct result {
        uint64_t sent = 0, received = 0;
        uint64_t up_fnv = 0, down_fnv = 0;
    };

    /// Sends and receives at the same time until the plan is complete.
    /// `prelude`: bytes of the up stream already written (hold mode).
    result exchange(const plan& p, stream& up, fnv& up_sum, uint64_t prelude = 0) {
        stream want(p.echo ? p.up_seed : p.down_seed);
        fnv down_sum;
        uint64_t expected = p.echo ? p.up_bytes : p.down_text.empty() ? p.down_bytes : p.down_text.size();
        uint64_t up_left = p.up_bytes - prelude, got = 0;
        std::string text;
        std::vector<std::byte> chunk(p.record), plain(64 * 1024), check(64 * 1024);
        for (;;) {
            // Encrypt and send until the socket takes no more (bounded: the
            // proxy's backpressure shows as a socket that stays full).
            for (;;) {
                while (up_left > 0 && _out.capacity - _out.length >= p.record + 1024 &&
                       _out.length - _sent < (256 << 10)) {
                    size_t k = static_cast<size_t>(std::min<uint64_t>(up_left, p.record));
                    up.fill(chunk.data(), k);
                    up_sum.add(chunk.data(), k);
                    size_t done = 0;
                    tls::status st = drive([&] { return _s.write({chunk.data(), k}, done); });
                    expect(st == tls::status::done && done == k, fmt::format("wolfSSL write: {}", _s.error_string()));
                    up_left -= k;
                }
                if (up_left == 0 && p.close_after_send && !_close_notify_sent) {
                    _s.shutdown(); // close_notify into the output
                    _close_notify_sent = true;
                }
                send_some();
                if (_sent < _out.length || up_left == 0) {
                    break;
                }
            }
            if (_close_notify_sent && !p.hold_fin && _sent == _out.length && !_fin_sent) {
                ::shutdown(_fd, SHUT_WR);
                _fin_sent = true;
            }
            // Decrypt what arrived.
            while (!_got_close_notify) {
                size_t n = 0;
                tls::status st = drive([&] { return _s.read(plain, n); });
                if (st == tls::status::done) {
                    expect(got + n <= expected,
                           fmt::format("{} bytes more than the {} expected", got + n - expected, expected));
                    if (!p.down_text.empty()) {
                        text.append(reinterpret_cast<const char*>(plain.data()), n);
                    } else {
                        want.fill(check.data(), n);
                        if (std::memcmp(check.data(), plain.data(), n) != 0) {
                            size_t i = 0;
                            while (check[i] == plain[i]) {
                                ++i;
                            }
                            throw failure(
                                fmt::format("received bytes differ from what was expected at byte {}", got + i));
                        }
                    }
                    down_sum.add(plain.data(), n);
                    got += n;
                    continue;
                }
                if (st == tls::status::closed) {
                    _got_close_notify = true;
                    break;
                }
                if (st == tls::status::want_write) {
                    continue;
                }
                expect(st == tls::status::want_read, fmt::format("wolfSSL read: {}", _s.error_string()));
                break;
            }
            expect(!_got_close_notify || got == expected,
                   fmt::format("close_notify after {} of {} bytes", got, expected));
            expect(
                !_tcp_eof || _got_close_notify || got == expected,
                fmt::format("the proxy closed the connection after {} of {} bytes (no close_notify)", got, expected));
            bool sending_done =
                up_left == 0 && _sent == _out.length && (!p.close_after_send || p.hold_fin || _fin_sent);
            bool receiving_done = got == expected && (!p.expect_close || (_got_close_notify && _tcp_eof));
            if (sending_done && receiving_done) {
                break;
            }
            expect(!(_tcp_eof && p.expect_close && got == expected && !_got_close_notify), "EOF without close_notify");
            short events = static_cast<short>((_sent < _out.length ? POLLOUT : 0) | (_tcp_eof ? 0 : POLLIN));
            expect(events != 0, fmt::format("the proxy closed early: {} of {} bytes received", got, expected));
            wait(events, fmt::format("{} of {} bytes sent, {} of {} received", p.up_bytes - up_left, p.up_bytes, got,
                                     expected));
            if (!_tcp_eof) {
                receive_some();
            }
        }
        if (!p.down_text.empty()) {
            expect(text == p.down_text, fmt::format("the service answered {:?}, want {:?}", text, p.down_text));
        }
        return {p.up_bytes, got, up_sum.h, down_sum.h};
    }

    /// Our side's close_notify and FIN, after the proxy closed its side.
    void finish() {
        if (!_fin_sent) {
            if (!_close_notify_sent) {
                _s.shutdown();
                _close_notify_sent = true;
            }
            flush_all();
            ::shutdown(_fd, SHUT_WR);
            _fin_sent = true;
        }
    }

    /// After something the proxy must refuse: waits until it closes the
    /// connection (EOF or reset). Throws if plaintext arrives instead.
    std::string expect_closed_by_proxy() {
        std::vector<std::byte> plain(16384);
        for (;;) {
            send_some();
            size_t n = 0;
            tls::status st = drive([&] { return _s.read(plain, n); });
            expect(st != tls::status::done, fmt::format("{} bytes still came through", n));
            if (st == tls::status::closed) {
                return "close_notify";
            }
            if (st == tls::status::failed) {
                return fmt::format("wolfSSL: {}", _s.error_string());
            }
            if (_tcp_eof) {
                return _reset ? "connection reset" : "EOF";
            }
            wait(POLLIN, "waiting for the proxy to close the tunnel");
            receive_some();
        }
    }
    /// Sends what is buffered, blocking until it is out.
    void flush_all() {
        while (_sent < _out.length) {
            send_some();
            if (_sent < _out.length) {
                wait(POLLOUT, "sending");
            }
        }
    }
    /// Runs a session call with what was received fed to it.
    template <class F>
    tls::status drive(F&& f) {
        std::span<const std::byte> avail(_in.data() + _in_off, _in.size() - _in_off);
        _s.feed(avail);
        tls::status st = f();
        _in_off += avail.size() - _s.input_left();
        _s.feed({});
        if (_in_off == _in.size()) {
            _in.clear();
            _in_off = 0;
        }
        return st;
    }

private:
    void send_some() {
        while (_sent < _out.length) {
            ssize_t w = ::send(_fd, _out.data + _sent, _out.length - _sent, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                break;
            }
            expect(w > 0, "send: " + errno_str(errno));
            _sent += static_cast<uint32_t>(w);
        }
        if (_sent == _out.length) {
            _sent = _out.length = 0;
        } else if (_sent > _out.capacity / 2) {
            std::memmove(_out.data, _out.data + _sent, _out.length - _sent);
            _out.length -= _sent;
            _sent = 0;
        }
    }
    void receive_some() {
        std::byte buf[64 * 1024];
        for (;;) {
            ssize_t r = ::recv(_fd, buf, sizeof buf, 0);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r < 0 && errno == EAGAIN) {
                return;
            }
            if (r < 0 && errno == ECONNRESET) {
                _tcp_eof = _reset = true;
                return;
            }
            expect(r >= 0, "recv: " + errno_str(errno));
            if (r == 0) {
                _tcp_eof = true;
                return;
            }
            _in.insert(_in.end(), buf, buf + r);
        }
    }
    void wait_input(const char* what) {
        wait(POLLIN, what);
        receive_some();
        expect(!_tcp_eof, fmt::format("{}: the proxy closed the connection", what));
    }
    void wait(short events, const std::string& what) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(_deadline - clock_type::now()).count();
        expect(left > 0, "timed out: " + what);
        pollfd p{_fd, events, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
        expect(r >= 0 || errno == EINTR, "poll: " + errno_str(errno));
    }

    tls::context _ctx;
    tls::session _s;
    int _fd = -1;
    std::vector<std::byte> _out_store = std::vector<std::byte>(1 << 20);
    tls::out_buffer _out{_out_store.data(), static_cast<uint32_t>(_out_store.size()), 0};
    uint32_t _sent = 0;
    std::vector<std::byte> _in;
    size_t _in_off = 0;
    bool _tcp_eof = false, _reset = false, _close_notify_sent = false, _fin_sent = false, _got_close_notify = false;
    clock_type::time_point _deadline;
};

struct case_args {
    uint16_t port;
    std::string bundle, name;
    uint64_t mib;
};

std::string mib_text(uint64_t bytes) {
    return bytes % (1 << 20) == 0 ? fmt::format("{} MiB", bytes >> 20) : fmt::format("{} bytes", bytes);
}

// Echo, both ways at once, then close_notify + FIN from the client; the echo
// service half-closes after the last byte, so the proxy's close_notify and
// FIN follow the whole stream.
std::string case_bulk(const case_args& a, const client_options& o, uint64_t bytes) {
    auto t0 = clock_type::now();
    client c(a.port, a.bundle, a.name, o);
    c.handshake(false);
    client::plan p;
    p.up_bytes = bytes;
    p.echo = true;
    p.close_after_send = true;
    p.expect_close = true;
    stream up(p.up_seed);
    fnv sum;
    auto r = c.exchange(p, up, sum);
    expect(r.up_fnv == r.down_fnv, "checksums differ");
    double s = seconds_since(t0);
    return fmt::format("{} each way, fnv1a {:016x} both ways, close_notify + EOF both ways, {}, {:.1f}s ({:.1f} MB/s "
                       "each way)",
                       mib_text(bytes), r.up_fnv, c.suite(), s, double(bytes) / s / 1e6);
}

// Records written together with the client's Finished (before the proxy can
// have switched to kTLS), then more: everything echoed intact.
std::string case_leftover(const case_args& a, const client_options& o, std::vector<size_t> records, uint64_t more) {
    client c(a.port, a.bundle, a.name, o);
    c.handshake(true);
    client::plan p;
    p.echo = true;
    p.close_after_send = true;
    p.expect_close = true;
    stream up(p.up_seed);
    fnv sum;
    uint64_t prelude = 0;
    for (size_t n : records) {
        c.write(up, sum, n, n);
        prelude += n;
    }
    c.flush_all(); // Finished and the records leave in one send
    p.up_bytes = prelude + more;
    auto r = c.exchange(p, up, sum, prelude);
    expect(r.up_fnv == r.down_fnv, "checksums differ");
    std::string sizes;
    for (size_t n : records) {
        sizes += fmt::format("{}{}", sizes.empty() ? "" : "+", n);
    }
    return fmt::format("{} records ({} bytes) sent with the Finished, then {} more; {} bytes echoed intact, {}",
                       records.size(), sizes, more, r.received, c.suite());
}

// The client sends, then close_notify + FIN, and still gets the whole answer.
// With `hold_fin`, the FIN follows only after the answer (close_notify alone
// half-closes a TLS stream).
std::string case_halfclose(const case_args& a, const client_options& o, std::vector<size_t> records, uint64_t more,
                           bool hold_fin) {
    client c(a.port, a.bundle, a.name, o);
    c.handshake(!records.empty());
    client::plan p;
    p.close_after_send = true;
    p.hold_fin = hold_fin;
    p.expect_close = true;
    stream up(p.up_seed);
    fnv sum;
    uint64_t prelude = 0;
    for (size_t n : records) {
        c.write(up, sum, n, n);
        prelude += n;
    }
    p.up_bytes = prelude + more;
    p.down_text = fmt::format("{}\n", p.up_bytes);
    auto r = c.exchange(p, up, sum, prelude);
    c.finish();
    return fmt::format("sent {} bytes{}, then close_notify{}; the service's answer \"{}\" arrived whole, then "
                       "close_notify + EOF; {}",
                       r.sent, prelude ? fmt::format(" ({} of them with the Finished, close_notify too)", prelude) : "",
                       hold_fin ? " (FIN only after the answer)" : " + FIN", p.up_bytes, c.suite());
}

// The service sends and closes first: the client gets everything, then
// close_notify, then EOF; then it closes its side.
std::string case_service_closes(const case_args& a, const client_options& o) {
    client c(a.port, a.bundle, a.name, o);
    c.handshake(false);
    client::plan p;
    p.down_bytes = close_bytes;
    p.down_seed = close_seed;
    p.expect_close = true;
    stream up(p.up_seed);
    fnv sum;
    auto r = c.exchange(p, up, sum);
    c.finish();
    return fmt::format("{} bytes from the service, then close_notify + EOF; fnv1a {:016x}; {}", r.received, r.down_fnv,
                       c.suite());
}

// A round trip of 4096 echoed bytes (after it the proxy has switched to kTLS),
// then one of two endings, each of which the proxy must answer by closing:
// - key_update: a TLS 1.3 KeyUpdate from the client and 1000 bytes under the
//   new keys; the 6.1 kernel cannot follow it (the proxy counts it);
// - otherwise: "held" is printed and the tunnel waits; the VM script revokes
//   the CN in the table file and sends the data plane SIGHUP.
std::string case_after_switch(const case_args& a, const client_options& o, bool key_update) {
    client c(a.port, a.bundle, a.name, o);
    c.handshake(false);
    client::plan p;
    p.up_bytes = 4096;
    p.echo = true;
    stream up(p.up_seed);
    fnv sum;
    c.exchange(p, up, sum);
    if (key_update) {
        tls::status st = c.drive([&] {
            int r = wolfSSL_update_keys(c.ssl());
            return r == WOLFSSL_SUCCESS ? tls::status::done : tls::status::failed;
        });
        expect(st == tls::status::done, "wolfSSL_update_keys failed");
        c.write(up, sum, 1000, 1000); // under the new keys
        c.flush_all();
        std::string how = c.expect_closed_by_proxy();
        return fmt::format("4096 bytes echoed, then KeyUpdate + 1000 bytes: the proxy closed the tunnel ({}); {}", how,
                           c.suite());
    }
    std::printf("held\n");
    std::fflush(stdout);
    auto t0 = clock_type::now();
    std::string how = c.expect_closed_by_proxy();
    return fmt::format("4096 bytes echoed, then held: the proxy closed the tunnel {:.2f}s later ({}); {}",
                       seconds_since(t0), how, c.suite());
}

int run_client(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "usage: %s client PROXY_PORT BUNDLE_DIR CASE NAME [MIB]\n", argv[0]);
        return 2;
    }
    case_args a{static_cast<uint16_t>(std::atoi(argv[2])), argv[3], argv[5],
                argc > 6 ? static_cast<uint64_t>(std::atoll(argv[6])) : 32};
    std::string name = argv[4];
    constexpr const char* aes128 = "TLS13-AES128-GCM-SHA256";
    constexpr const char* aes256 = "TLS13-AES256-GCM-SHA384";
    try {
        std::string detail;
        if (name == "bulk") {
            detail = case_bulk(a, {aes128, false}, a.mib << 20);
        } else if (name == "leftover") {
            // Two records fit the proxy's buffers; the 16 KiB ones do not all
            // fit, so it stops in the middle of one and must complete it.
            detail = case_leftover(a, {aes256, false}, {1, 100, 5000, 16384, 16384, 16384, 3000}, 1 << 20);
        } else if (name == "halfclose") {
            detail = case_halfclose(a, {aes256, false}, {}, (1 << 20) + 7, false);
        } else if (name == "halfclose-early") {
            // Records and close_notify with the Finished: the proxy reads the
            // close_notify in user space, switches, and must still pass the
            // end on to the service; the FIN comes after the answer.
            detail = case_halfclose(a, {aes128, false}, {13333, 13333, 13334}, 0, true);
        } else if (name == "halfclose-fin-early") {
            // The same with the FIN at once: a socket whose FIN has arrived
            // cannot take the kernel's ULP, so this one may stay in user space.
            detail = case_halfclose(a, {aes128, false}, {12000, 12001}, 0, false);
        } else if (name == "service-closes") {
            detail = case_service_closes(a, {aes128, false});
        } else if (name == "revoked") {
            detail = case_after_switch(a, {aes128, false}, false);
        } else if (name == "keyupdate") {
            detail = case_after_switch(a, {aes128, false}, true);
        } else if (name == "tls12") {
            detail = case_leftover(a, {"ECDHE-ECDSA-AES128-GCM-SHA256", true}, {700, 16384}, 4 << 20);
            expect(detail.find("TLSv1.2 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256") != std::string::npos,
                   "not TLS 1.2 ECDHE-ECDSA-AES128-GCM: " + detail);
        } else if (name == "chacha") {
            detail = case_bulk(a, {"TLS13-CHACHA20-POLY1305-SHA256", false}, 1000003);
        } else {
            std::fprintf(stderr, "unknown case %s\n", name.c_str());
            return 2;
        }
        std::printf("ok %s: %s\n", name.c_str(), detail.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::printf("not ok %s: %s\n", name.c_str(), e.what());
        return 1;
    }
}

} // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc >= 5 && std::strcmp(argv[1], "backends") == 0) {
        try {
            return run_backends(static_cast<uint16_t>(std::atoi(argv[2])), static_cast<uint16_t>(std::atoi(argv[3])),
                                static_cast<uint16_t>(std::atoi(argv[4])));
        } catch (const std::exception& e) {
            std::printf("not ok backends: %s\n", e.what());
            return 1;
        }
    }
    if (argc >= 2 && std::strcmp(argv[1], "client") == 0) {
        return run_client(argc, argv);
    }
    std::fprintf(
        stderr,
        "usage: %s backends ECHO_PORT COUNT_PORT CLOSE_PORT\n"
        "       %s client PROXY_PORT BUNDLE_DIR CASE NAME [MIB]\n"
        "cases: bulk leftover halfclose halfclose-early halfclose-fin-early service-closes keyupdate tls12 chacha\n",
        argv[0], argv[0]);
    return 2;
}
