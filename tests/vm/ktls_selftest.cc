// kTLS self-test, run inside the VM (tests/vm/run): a wolfSSL client thread
// and a server over loopback TCP, mutual TLS through common/tls with
// certificates from control/ca; the server hands its record layer to the
// kernel with ktls::install and then checks bulk recv/send, splice to a
// plain TCP socket and back, close_notify both ways, the hand-off with
// records already buffered in user space, and (TLS 1.3) KeyUpdate detection.
// Prints one "ok ..." / "not ok ..." line per case; exit status 1 if any failed.
#include "common/tls/ktls.hh"
#include "common/tls/tls.hh"
#include "control/ca/ca.hh"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <fmt/format.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace zt;
namespace kt = zt::tls::ktls;

namespace {

constexpr int io_timeout_s = 30;
size_t g_bulk = 4 << 20;

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

/// Deterministic test bytes: stream `seed`, `n` bytes.
std::vector<std::byte> pattern(uint64_t seed, size_t n) {
    std::vector<std::byte> v(n);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = static_cast<std::byte>(x >> 24);
    }
    return v;
}

uint64_t fnv1a(std::span<const std::byte> d) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (std::byte b : d) {
        h = (h ^ static_cast<uint8_t>(b)) * 0x100000001b3ull;
    }
    return h;
}

/// Where two byte streams first differ, for the failure message.
std::string compare(std::span<const std::byte> got, std::span<const std::byte> want) {
    if (got.size() == want.size() && std::memcmp(got.data(), want.data(), got.size()) == 0) {
        return {};
    }
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) {
        ++i;
    }
    return fmt::format("got {} bytes, want {}; first difference at byte {}", got.size(), want.size(), i);
}

void set_timeouts(int fd) {
    timeval tv{io_timeout_s, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void send_all(int fd, const void* p, size_t n) {
    const auto* b = static_cast<const char*>(p);
    while (n > 0) {
        ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        expect(w > 0, "send: " + errno_str(errno));
        b += w;
        n -= static_cast<size_t>(w);
    }
}

void recv_exact(int fd, void* p, size_t n) {
    auto* b = static_cast<char*>(p);
    while (n > 0) {
        ssize_t r = ::recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        expect(r > 0, r == 0 ? std::string("recv: unexpected EOF") : "recv: " + errno_str(errno));
        b += r;
        n -= static_cast<size_t>(r);
    }
}

int listen_loopback(uint16_t& port) {
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (l < 0 || ::bind(l, reinterpret_cast<sockaddr*>(&sa), sl) != 0 || ::listen(l, 16) != 0 ||
        ::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &sl) != 0) {
        throw failure("listen on loopback: " + errno_str(errno));
    }
    port = ntohs(sa.sin_port);
    return l;
}

int connect_loopback(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    expect(fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0, "connect: " + errno_str(errno));
    set_timeouts(fd);
    return fd;
}

int accept_timeout(int l) {
    pollfd p{l, POLLIN, 0};
    expect(::poll(&p, 1, io_timeout_s * 1000) == 1, "accept: timed out");
    int fd = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    expect(fd >= 0, "accept: " + errno_str(errno));
    set_timeouts(fd);
    return fd;
}

/// A one-shot event between the two threads, with a value.
class gate {
public:
    void open(uint64_t v = 0) {
        std::lock_guard g(_m);
        _value = v;
        _open = true;
        _cv.notify_all();
    }
    uint64_t wait() {
        std::unique_lock g(_m);
        expect(_cv.wait_for(g, std::chrono::seconds(io_timeout_s), [&] { return _open; }),
               "timed out waiting for the peer");
        return _value;
    }

private:
    std::mutex _m;
    std::condition_variable _cv;
    bool _open = false;
    uint64_t _value = 0;
};

/// Blocking TLS over a socket with common/tls (which never touches
/// sockets itself): ciphertext in from recv, out through send. Counts and
/// frames what wolfSSL consumed, for the hand-off to the kernel.
struct tls_conn {
    int fd = -1;
    tls::session s;
    std::vector<std::byte> out_storage = std::vector<std::byte>(128 * 1024);
    tls::out_buffer out{out_storage.data(), static_cast<uint32_t>(out_storage.size()), 0};
    std::vector<std::byte> in;
    size_t in_off = 0;
    kt::record_tracker tracker;
    uint64_t bytes_in = 0, bytes_out = 0, consumed = 0;

    tls_conn() = default;
    tls_conn(const tls_conn&) = delete;
    tls_conn& operator=(const tls_conn&) = delete;
    ~tls_conn() {
        s.reset();
        if (fd >= 0) {
            ::close(fd);
        }
    }

    void flush() {
        if (out.length > 0) {
            send_all(fd, out.data, out.length);
            bytes_out += out.length;
            out.length = 0;
        }
    }
    /// Appends what the socket has (blocking); false on EOF.
    bool fill() {
        std::array<std::byte, 65536> buf;
        for (;;) {
            ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            expect(r >= 0, "recv: " + errno_str(errno));
            if (r == 0) {
                return false;
            }
            in.insert(in.end(), buf.begin(), buf.begin() + r);
            bytes_in += static_cast<uint64_t>(r);
            return true;
        }
    }
    size_t unconsumed() const { return in.size() - in_off; }
    /// Runs one session call with the buffered input fed to it.
    template <class F>
    tls::status drive(F&& f) {
        std::span<const std::byte> avail(in.data() + in_off, in.size() - in_off);
        s.feed(avail);
        tls::status st = f();
        size_t used = avail.size() - s.input_left();
        s.feed({});
        tracker.consume(avail.first(used));
        consumed += used;
        in_off += used;
        if (in_off == in.size()) {
            in.clear();
            in_off = 0;
        }
        return st;
    }
    void handshake() {
        for (;;) {
            tls::status st = drive([&] { return s.handshake(); });
            flush();
            if (st == tls::status::done) {
                return;
            }
            expect(st == tls::status::want_read || st == tls::status::want_write,
                   fmt::format("handshake failed: {}", s.error_string()));
            if (st == tls::status::want_read) {
                expect(fill(), "handshake: peer closed");
            }
        }
    }
    void write_all(std::span<const std::byte> d, size_t record = 16384) {
        while (!d.empty()) {
            size_t n = 0;
            auto chunk = d.first(std::min(record, d.size()));
            tls::status st = drive([&] { return s.write(chunk, n); });
            flush();
            if (st == tls::status::want_write) {
                continue;
            }
            expect(st == tls::status::done, fmt::format("wolfSSL write failed: {}", s.error_string()));
            d = d.subspan(n);
        }
    }
    /// Plaintext bytes (>0); 0 when the peer sent close_notify. Throws on
    /// EOF without close_notify.
    size_t read_some(std::span<std::byte> buf) {
        for (;;) {
            size_t n = 0;
            tls::status st = drive([&] { return s.read(buf, n); });
            if (st == tls::status::done) {
                return n;
            }
            if (st == tls::status::closed) {
                return 0;
            }
            if (st == tls::status::want_write) {
                flush();
                continue;
            }
            expect(st == tls::status::want_read, fmt::format("wolfSSL read failed: {}", s.error_string()));
            if (unconsumed() == 0) {
                expect(fill(), "TCP closed without close_notify");
            }
        }
    }
    std::vector<std::byte> read_exact(size_t n) {
        std::vector<std::byte> got;
        got.reserve(n);
        std::vector<std::byte> buf(16384);
        while (got.size() < n) {
            size_t r = read_some(std::span(buf).first(std::min(buf.size(), n - got.size())));
            expect(r > 0, fmt::format("close_notify after {} of {} bytes", got.size(), n));
            got.insert(got.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(r));
        }
        return got;
    }
};

/// Decrypts everything wolfSSL already holds or was given, completing a
/// partial record from the socket with exactly the missing bytes, so the
/// socket sits on a record boundary. Returns the plaintext, and how many
/// bytes were read to complete partial records.
std::vector<std::byte> drain_for_ktls(tls_conn& c, size_t& completed) {
    std::vector<std::byte> plain;
    std::array<std::byte, 16384> buf;
    completed = 0;
    for (;;) {
        for (;;) {
            size_t n = 0;
            tls::status st = c.drive([&] { return c.s.read(buf, n); });
            if (st == tls::status::done) {
                plain.insert(plain.end(), buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
                continue;
            }
            expect(st == tls::status::want_read, fmt::format("drain: wolfSSL read: {}", c.s.error_string()));
            break;
        }
        expect(c.unconsumed() == 0 && c.s.pending() == 0, "drain: wolfSSL left input unconsumed");
        uint32_t need = c.tracker.needed();
        if (need == 0) {
            return plain;
        }
        std::vector<std::byte> more(need);
        recv_exact(c.fd, more.data(), need);
        c.in.insert(c.in.end(), more.begin(), more.end());
        c.bytes_in += need;
        completed += need;
    }
}

/// Drains, installs kTLS on the server side and frees the WOLFSSL object.
std::vector<std::byte> switch_to_ktls(tls_conn& c, std::string& info) {
    size_t completed = 0;
    std::vector<std::byte> leftover = drain_for_ktls(c, completed);
    kt::session_keys k = kt::export_keys(c.s.raw(), true);
    expect(k.ok(), std::string("export_keys: ") + (k.error ? k.error : "?"));
    info = fmt::format("tx_seq={} rx_seq={}", k.tx.seq, k.rx.seq);
    if (completed > 0) {
        info += fmt::format(", completed a partial record with {} bytes", completed);
    }
    std::string err;
    kt::install_status st = kt::install(c.fd, c.s.raw(), true, err);
    expect(st == kt::install_status::installed, err);
    c.s.reset(); // the kernel owns the record layer now (no wolfSSL_shutdown)
    return leftover;
}

/// Receives exactly `n` plaintext bytes from a kTLS socket with recv().
std::vector<std::byte> ktls_recv_exact(int fd, size_t n) {
    std::vector<std::byte> got(n);
    size_t have = 0;
    while (have < n) {
        ssize_t r = ::recv(fd, got.data() + have, n - have, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        expect(r > 0, r == 0 ? fmt::format("kTLS recv: EOF after {} of {} bytes", have, n)
                             : fmt::format("kTLS recv after {} of {} bytes: {}", have, n, errno_str(errno)));
        have += static_cast<size_t>(r);
    }
    return got;
}

/// Moves exactly `n` bytes from `from` to `to` with splice through `pipefd`.
void splice_exact(int from, int to, const int pipefd[2], size_t n, const char* what) {
    size_t moved = 0;
    while (moved < n) {
        ssize_t in = ::splice(from, nullptr, pipefd[1], nullptr, std::min<size_t>(n - moved, 65536), SPLICE_F_MOVE);
        if (in < 0 && errno == EINTR) {
            continue;
        }
        expect(in > 0, in == 0
                           ? fmt::format("splice {}: EOF after {} of {} bytes", what, moved, n)
                           : fmt::format("splice {} into the pipe after {} bytes: {}", what, moved, errno_str(errno)));
        size_t left = static_cast<size_t>(in);
        while (left > 0) {
            ssize_t out = ::splice(pipefd[0], nullptr, to, nullptr, left, SPLICE_F_MOVE);
            if (out < 0 && errno == EINTR) {
                continue;
            }
            expect(out > 0, fmt::format("splice {} out of the pipe: {}", what, errno_str(errno)));
            left -= static_cast<size_t>(out);
        }
        moved += static_cast<size_t>(in);
    }
}

struct suite_cfg {
    const char* label;
    const char* wolfssl_name;
    int version;
    uint16_t iana;
};

constexpr suite_cfg suites[] = {
    {"tls13-aes128-gcm", "TLS13-AES128-GCM-SHA256", WOLFSSL_TLSV1_3, 0x1301},
    {"tls13-aes256-gcm", "TLS13-AES256-GCM-SHA384", WOLFSSL_TLSV1_3, 0x1302},
    {"tls12-ecdhe-ecdsa-aes128-gcm", "ECDHE-ECDSA-AES128-GCM-SHA256", WOLFSSL_TLSV1_2, 0xC02B},
    {"tls12-ecdhe-ecdsa-aes256-gcm", "ECDHE-ECDSA-AES256-GCM-SHA384", WOLFSSL_TLSV1_2, 0xC02C},
};

struct world {
    control::ca::authority ca = control::ca::authority::create(config::key_type::ecdsa_p256, 30);
    control::ca::issued server = ca.issue_server("ztdns.test", {"127.0.0.1"}, config::key_type::ecdsa_p256, 30);
    control::ca::issued client = ca.issue_endpoint(config::endpoint_kind::client, "alice", config::key_type::ecdsa_p256,
                                                   30, [](const std::string&) { return false; });
    tls::context sctx, cctx;
    int listener = -1;
    uint16_t port = 0;
    int failed = 0;

    world() {
        std::string err;
        sctx = tls::context::create({true, server.cert_pem, server.key_pem, ca.cert_pem(), true, true}, err);
        expect(sctx.valid(), "server context: " + err);
        cctx = tls::context::create({false, client.cert_pem, client.key_pem, ca.cert_pem(), true, true}, err);
        expect(cctx.valid(), "client context: " + err);
        listener = listen_loopback(port);
    }
};

/// What one case shares between its server and client halves.
struct case_ctx {
    const suite_cfg& cfg;
    world& w;
    gate handshaken, written, switched, done;
};

using server_fn = std::string (*)(tls_conn&, case_ctx&);
using client_fn = void (*)(tls_conn&, case_ctx&);

/// Runs one case on a fresh connection and prints its line.
void run_case(world& w, const suite_cfg& cfg, const char* name, server_fn server, client_fn client) {
    case_ctx ctx{cfg, w, {}, {}, {}, {}};
    std::string client_err;
    std::thread ct([&] {
        try {
            tls_conn c;
            c.fd = connect_loopback(w.port);
            expect(c.s.start(w.cctx, &c.out, "ztdns.test"), "client session");
            if (cfg.version == WOLFSSL_TLSV1_2) {
                // Not wolfSSL_SetVersion: a client whose context can do TLS
                // 1.3 would take the server's downgrade sentinel for an attack.
                wolfSSL_set_options(c.s.raw(), WOLFSSL_OP_NO_TLSv1_3);
            }
            expect(wolfSSL_set_cipher_list(c.s.raw(), cfg.wolfssl_name) == WOLFSSL_SUCCESS, "set_cipher_list");
            c.handshake();
            client(c, ctx);
        } catch (const std::exception& e) {
            client_err = e.what();
        }
        ctx.done.open(); // never leave the server waiting for a client that gave up
    });
    std::string server_err, detail;
    int server_fd = -1;
    try {
        tls_conn s;
        s.fd = accept_timeout(w.listener);
        server_fd = s.fd;
        expect(s.s.start(w.sctx, &s.out), "server session");
        s.handshake();
        expect(s.s.peer_cn() == w.client.cn, "peer CN is not the client's");
        const kt::cipher* c = kt::find_cipher(s.s.raw());
        expect(c != nullptr && c->suite == cfg.iana,
               fmt::format("negotiated {} {}, not eligible or not the suite asked for", s.s.version(), s.s.cipher()));
        ctx.handshaken.open();
        detail = server(s, ctx);
        // Let the client finish before the socket goes away.
        ctx.done.wait();
    } catch (const std::exception& e) {
        server_err = e.what();
        if (server_fd >= 0) {
            ::shutdown(server_fd, SHUT_RDWR); // unblocks the client
        }
        ctx.handshaken.open();
        ctx.written.open();
        ctx.switched.open();
    }
    ct.join();
    std::string label = fmt::format("{} {}", cfg.label, name);
    if (server_err.empty() && client_err.empty()) {
        std::printf("ok %s%s%s\n", label.c_str(), detail.empty() ? "" : ": ", detail.c_str());
    } else {
        ++w.failed;
        std::string why = !server_err.empty() ? "server: " + server_err : "";
        if (!client_err.empty()) {
            why += (why.empty() ? "" : "; ") + std::string("client: ") + client_err;
        }
        std::printf("not ok %s: %s\n", label.c_str(), why.c_str());
    }
    std::fflush(stdout);
}

// (a) recv/send on the kTLS socket, 4 MiB each way, against wolfSSL.
std::string bulk_server(tls_conn& s, case_ctx& ctx) {
    std::string info;
    std::vector<std::byte> got = switch_to_ktls(s, info);
    auto up = pattern(1, g_bulk);
    expect(got.size() <= up.size(), "more plaintext than sent");
    auto rest = ktls_recv_exact(s.fd, up.size() - got.size());
    got.insert(got.end(), rest.begin(), rest.end());
    std::string diff = compare(got, up);
    expect(diff.empty(), "client->server via kTLS recv: " + diff);
    auto down = pattern(2, g_bulk);
    send_all(s.fd, down.data(), down.size());
    ctx.done.wait();
    return fmt::format("{} bytes each way, fnv up={:016x} down={:016x}; {}", g_bulk, fnv1a(up), fnv1a(down), info);
}

void bulk_client(tls_conn& c, case_ctx& ctx) {
    c.write_all(pattern(1, g_bulk));
    auto got = c.read_exact(g_bulk);
    std::string diff = compare(got, pattern(2, g_bulk));
    ctx.done.open();
    expect(diff.empty(), "server->client via kTLS send: " + diff);
}

// (b) splice: kTLS socket -> pipe -> plain TCP backend, and back.
std::string splice_server(tls_conn& s, case_ctx& ctx) {
    std::string info;
    std::vector<std::byte> leftover = switch_to_ktls(s, info);
    ctx.switched.open();
    uint16_t bport = 0;
    int bl = listen_loopback(bport);
    int front = connect_loopback(bport);
    int back = accept_timeout(bl);
    ::close(bl);
    std::string backend_err;
    std::thread backend([&] {
        try {
            std::vector<std::byte> got(g_bulk);
            recv_exact(back, got.data(), got.size());
            std::string diff = compare(got, pattern(3, g_bulk));
            expect(diff.empty(), "client->backend through splice: " + diff);
            auto down = pattern(4, g_bulk);
            send_all(back, down.data(), down.size());
        } catch (const std::exception& e) {
            backend_err = e.what();
            ::shutdown(back, SHUT_RDWR);
        }
    });
    int p[2] = {-1, -1};
    std::string err;
    try {
        expect(::pipe2(p, O_CLOEXEC) == 0, "pipe2");
        // Bytes the drain decrypted in user space go first (none expected here).
        if (!leftover.empty()) {
            send_all(front, leftover.data(), leftover.size());
        }
        splice_exact(s.fd, front, p, g_bulk - leftover.size(), "kTLS -> backend");
        splice_exact(front, s.fd, p, g_bulk, "backend -> kTLS");
        ctx.done.wait();
    } catch (const std::exception& e) {
        err = e.what();
        ::shutdown(front, SHUT_RDWR);
        ::shutdown(back, SHUT_RDWR);
    }
    backend.join();
    ::close(front);
    ::close(back);
    if (p[0] >= 0) {
        ::close(p[0]);
        ::close(p[1]);
    }
    expect(err.empty(), err);
    expect(backend_err.empty(), "backend: " + backend_err);
    return fmt::format("{} bytes each way through a pipe, {}", g_bulk, info);
}

void splice_client(tls_conn& c, case_ctx& ctx) {
    ctx.switched.wait();
    c.write_all(pattern(3, g_bulk));
    auto got = c.read_exact(g_bulk);
    std::string diff = compare(got, pattern(4, g_bulk));
    ctx.done.open();
    expect(diff.empty(), "backend->client through splice: " + diff);
}

// (c) close_notify: the client's reaches us as an alert record; ours
// reaches the client's wolfSSL as a clean close.
std::string close_server(tls_conn& s, case_ctx& ctx) {
    std::string info;
    std::vector<std::byte> leftover = switch_to_ktls(s, info);
    expect(leftover.empty(), "unexpected early data");
    ctx.switched.open();
    ctx.written.wait(); // "bye!" and close_notify are on their way
    int p[2];
    expect(::pipe2(p, O_CLOEXEC) == 0, "pipe2");
    ssize_t n = ::splice(s.fd, nullptr, p[1], nullptr, 65536, SPLICE_F_MOVE);
    int splice_errno = errno;
    char data[8] = {};
    ssize_t r = n > 0 ? ::read(p[0], data, sizeof data) : -1;
    // The alert is a whole record in the socket once it polls readable.
    pollfd pf{s.fd, POLLIN, 0};
    expect(::poll(&pf, 1, io_timeout_s * 1000) == 1, "the close_notify did not arrive");
    ssize_t n2 = ::splice(s.fd, nullptr, p[1], nullptr, 65536, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    int splice2_errno = errno;
    ::close(p[0]);
    ::close(p[1]);
    expect(n == 4 && r == 4 && std::memcmp(data, "bye!", 4) == 0,
           fmt::format("splice of the data before close_notify gave {} ({})", n, n < 0 ? errno_str(splice_errno) : ""));
    expect(n2 < 0 && splice2_errno == EINVAL,
           fmt::format("splice with close_notify next returned {} ({}), want EINVAL", n2, errno_str(splice2_errno)));
    ssize_t rr = ::recv(s.fd, data, sizeof data, MSG_DONTWAIT);
    int recv_errno = errno;
    expect(rr < 0 && recv_errno == EIO,
           fmt::format("recv with close_notify next returned {} ({}), want EIO", rr, errno_str(recv_errno)));
    uint8_t type = 0;
    std::array<std::byte, 64> rec;
    ssize_t m = kt::recv_record(s.fd, rec.data(), rec.size(), type);
    expect(m >= 0, "recv_record: " + errno_str(errno));
    kt::record_kind kind = kt::classify(type, std::span(rec).first(static_cast<size_t>(m)));
    expect(type == kt::record_alert && kind == kt::record_kind::close_notify,
           fmt::format("recv_record gave type {} with {} bytes, want the alert close_notify", type, m));
    expect(kt::send_close_notify(s.fd), "send_close_notify: " + errno_str(errno));
    ctx.done.wait();
    // The client closed TCP after reading our close_notify.
    m = kt::recv_record(s.fd, rec.data(), rec.size(), type);
    expect(m == 0, fmt::format("after the client's FIN recv_record gave {} ({})", m, m < 0 ? errno_str(errno) : ""));
    return fmt::format("splice then {}, recv {}, recv_record: alert {} {}; {}", errno_str(splice2_errno),
                       errno_str(recv_errno), static_cast<int>(rec[0]), static_cast<int>(rec[1]), info);
}

void close_client(tls_conn& c, case_ctx& ctx) {
    ctx.switched.wait();
    c.write_all(std::as_bytes(std::span("bye!", 4)));
    c.s.shutdown();
    c.flush();
    ctx.written.open();
    std::array<std::byte, 64> buf;
    size_t n = c.read_some(buf);
    ::shutdown(c.fd, SHUT_WR);
    ctx.done.open();
    expect(n == 0, "wolfSSL client read data instead of the server's close_notify");
}

// (d) records already read into user space before the switch, the last one
// cut in half in the socket: wolfSSL decrypts them, the partial record is
// completed from the socket, and the kernel takes over at the right
// sequence in both directions.
constexpr size_t pre_up_sizes[] = {1, 1000, 16384, 5000, 333};
constexpr size_t pre_down_sizes[] = {10, 2000, 7};
constexpr size_t post_size = 100000;

std::vector<std::byte> concat_pattern(uint64_t seed, std::span<const size_t> sizes, size_t extra) {
    size_t total = extra;
    for (size_t s : sizes) {
        total += s;
    }
    return pattern(seed, total);
}

std::string leftover_server(tls_conn& s, case_ctx& ctx) {
    const uint64_t hs_consumed = s.consumed;
    const uint64_t sent = ctx.written.wait(); // client's ciphertext after its handshake
    const uint64_t already = s.bytes_in - hs_consumed;
    expect(sent > already, "the client's records all arrived with the handshake");
    const uint64_t in_socket = sent - already;
    // Wait until all of it is in the socket, then read all but the tail of
    // the last record, as a proxy's receive buffer might.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(io_timeout_s);
    for (;;) {
        int avail = 0;
        expect(::ioctl(s.fd, FIONREAD, &avail) == 0, "FIONREAD");
        if (static_cast<uint64_t>(avail) >= in_socket) {
            break;
        }
        expect(std::chrono::steady_clock::now() < deadline, "the client's records did not arrive");
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    constexpr size_t cut = 37;
    std::vector<std::byte> chunk(in_socket - cut);
    recv_exact(s.fd, chunk.data(), chunk.size());
    s.in.insert(s.in.end(), chunk.begin(), chunk.end());
    s.bytes_in += chunk.size();
    // Our own records sent by wolfSSL before the switch.
    auto down = concat_pattern(6, pre_down_sizes, post_size);
    size_t off = 0;
    for (size_t n : pre_down_sizes) {
        s.write_all(std::span(down).subspan(off, n));
        off += n;
    }
    std::string info;
    std::vector<std::byte> got = switch_to_ktls(s, info);
    auto up = concat_pattern(5, pre_up_sizes, post_size);
    const size_t pre_up = up.size() - post_size;
    std::string diff = compare(got, std::span(up).first(pre_up));
    expect(diff.empty(), "records drained from wolfSSL: " + diff);
    expect(info.find("partial record") != std::string::npos, "the drain did not have to complete a partial record");
    ctx.switched.open();
    send_all(s.fd, down.data() + off, post_size);
    auto rest = ktls_recv_exact(s.fd, post_size);
    diff = compare(rest, std::span(up).subspan(pre_up));
    expect(diff.empty(), "client->server via kTLS after the hand-off: " + diff);
    ctx.done.wait();
    return fmt::format("{} records drained in user space; {}", std::size(pre_up_sizes), info);
}

void leftover_client(tls_conn& c, case_ctx& ctx) {
    const uint64_t hs_out = c.bytes_out;
    ctx.handshaken.wait(); // so that none of these records arrives with the handshake
    auto up = concat_pattern(5, pre_up_sizes, post_size);
    size_t off = 0;
    for (size_t n : pre_up_sizes) {
        c.write_all(std::span(up).subspan(off, n)); // one record each
        off += n;
    }
    ctx.written.open(c.bytes_out - hs_out);
    auto down = concat_pattern(6, pre_down_sizes, post_size);
    auto got = c.read_exact(down.size());
    std::string diff = compare(got, down);
    expect(diff.empty(), "server->client across the hand-off: " + diff);
    ctx.switched.wait();
    c.write_all(std::span(up).subspan(off));
    ctx.done.open();
}

// (e) TLS 1.3 KeyUpdate from the client: reported as key_update.
std::string key_update_server(tls_conn& s, case_ctx& ctx) {
    std::string info;
    std::vector<std::byte> leftover = switch_to_ktls(s, info);
    expect(leftover.empty(), "unexpected early data");
    ctx.switched.open();
    std::array<std::byte, 64> rec;
    uint8_t type = 0;
    ssize_t m = kt::recv_record(s.fd, rec.data(), rec.size(), type);
    expect(m == 6 && type == kt::record_application_data && std::memcmp(rec.data(), "before", 6) == 0,
           fmt::format("first record: type {} with {} bytes ({}), want 6 data bytes", type, m,
                       m < 0 ? errno_str(errno) : ""));
    m = kt::recv_record(s.fd, rec.data(), rec.size(), type);
    expect(m > 0, "recv_record: " + errno_str(errno));
    kt::record_kind kind = kt::classify(type, std::span(rec).first(static_cast<size_t>(m)));
    expect(kind == kt::record_kind::key_update,
           fmt::format("got record type {} ({} bytes), want a KeyUpdate", type, m));
    // What a proxy does: close the tunnel (and count it).
    ::shutdown(s.fd, SHUT_RDWR);
    ctx.done.wait();
    return "KeyUpdate reported as record type 22; tunnel closed; " + info;
}

void key_update_client(tls_conn& c, case_ctx& ctx) {
    ctx.switched.wait();
    c.write_all(std::as_bytes(std::span("before", 6)));
    int r = wolfSSL_update_keys(c.s.raw());
    c.flush();
    ctx.done.open();
    expect(r == WOLFSSL_SUCCESS, fmt::format("wolfSSL_update_keys: {}", r));
}

} // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--bulk-kib") == 0 && i + 1 < argc) {
            g_bulk = static_cast<size_t>(std::atol(argv[++i])) * 1024;
        } else {
            std::fprintf(stderr, "usage: %s [--bulk-kib N]\n", argv[0]);
            return 2;
        }
    }
    kt::probe_result pr = kt::probe();
    std::printf("# %s\n", pr.reason.c_str());
    if (!pr.available) {
        std::printf("not ok ktls probe: %s\n", pr.reason.c_str());
        return 1;
    }
    std::printf("ok ktls probe\n");
    try {
        world w;
        for (const suite_cfg& cfg : suites) {
            run_case(w, cfg, "recv/send", bulk_server, bulk_client);
            run_case(w, cfg, "splice", splice_server, splice_client);
            run_case(w, cfg, "close_notify", close_server, close_client);
            run_case(w, cfg, "leftover records", leftover_server, leftover_client);
            if (cfg.version == WOLFSSL_TLSV1_3) {
                run_case(w, cfg, "KeyUpdate", key_update_server, key_update_client);
            }
        }
        std::printf("# %d failed\n", w.failed);
        return w.failed == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::printf("not ok ktls selftest setup: %s\n", e.what());
        return 1;
    }
}
