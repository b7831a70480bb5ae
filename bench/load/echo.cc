// zt-echo: the plain TCP backend of the proxy benchmarks. Echo (ping-pong and
// handshake round trips), sink (bulk upload) and source (bulk download)
// listeners, one epoll thread each per --threads, SO_REUSEPORT.
#include "bench/load/common.hh"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <unordered_set>

namespace zt::bench {
namespace {

constexpr std::string_view usage =
    R"(usage: zt-echo [--echo HOST:PORT] [--sink HOST:PORT] [--source HOST:PORT] [--threads N (1)]

  --echo    returns every byte it receives (with backpressure: stops reading while a write is pending)
  --sink    reads and discards
  --source  writes a pattern as fast as the peer reads, discards what it receives
  Port 0 picks a free port. Prints {"event":"listening","echo":"HOST:PORT",...} when ready;
  on SIGTERM/SIGINT prints {"metric":"echo_stats",...} and exits.
)";

enum class kind : uint8_t { listener, echo, sink, source };

struct item {
    kind k;
    kind serves; ///< listeners: what their connections do
    int fd;
    uint32_t events = 0;
    char* pending = nullptr;
    size_t pend_len = 0;
    size_t pend_off = 0;
};

struct stats {
    std::atomic<uint64_t> accepted{0}, bytes_in{0}, bytes_out{0};
};

int listen_on(const sockaddr_in& addr) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 4096) != 0) {
        std::fprintf(stderr, "zt-echo: cannot listen on port %u: %s\n", ntohs(addr.sin_port), std::strerror(errno));
        std::exit(1);
    }
    return fd;
}

class server_thread {
public:
    server_thread(std::vector<item*> listeners, stats& st) : _listeners(std::move(listeners)), _st(st) {
        for (auto* l : _listeners) {
            _poll.add(l->fd, l, EPOLLIN);
        }
        _buf = static_cast<char*>(std::malloc(buf_size));
        for (size_t i = 0; i < buf_size; ++i) {
            _buf[i] = static_cast<char>('A' + i % 26);
        }
    }
    ~server_thread() {
        for (auto* c : _conns) {
            ::close(c->fd);
            std::free(c->pending);
            delete c;
        }
        for (auto* l : _listeners) {
            ::close(l->fd);
            delete l;
        }
        std::free(_buf);
    }
    server_thread(const server_thread&) = delete;
    server_thread& operator=(const server_thread&) = delete;

    void run() {
        epoll_event evs[512];
        while (!g_stop.load(std::memory_order_relaxed)) {
            int n = _poll.wait(evs, 512, 100'000'000);
            for (int i = 0; i < n; ++i) {
                auto* it = static_cast<item*>(evs[i].data.ptr);
                if (it->k == kind::listener) {
                    accept_all(*it);
                } else {
                    serve(*it, evs[i].events);
                }
            }
        }
        _st.bytes_in += _in;
        _st.bytes_out += _out;
    }

private:
    static constexpr size_t buf_size = 256 * 1024;

    void accept_all(item& l) {
        for (;;) {
            int fd = accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                return; // EAGAIN, or out of descriptors: the client sees it
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            auto* c = new item{l.serves, l.serves, fd};
            c->events = l.serves == kind::source ? EPOLLIN | EPOLLOUT : EPOLLIN;
            _poll.add(fd, c, c->events);
            _conns.insert(c);
            _st.accepted.fetch_add(1, std::memory_order_relaxed);
        }
    }

    void set_events(item& c, uint32_t ev) {
        if (c.events != ev) {
            _poll.mod(c.fd, &c, ev);
            c.events = ev;
        }
    }

    void drop(item& c) {
        _poll.del(c.fd);
        ::close(c.fd);
        std::free(c.pending);
        _conns.erase(&c);
        delete &c;
    }

    /// false: the connection is gone.
    bool discard_input(item& c) {
        for (;;) {
            ssize_t n = ::recv(c.fd, _buf, buf_size, 0);
            if (n > 0) {
                _in += static_cast<uint64_t>(n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                return true;
            }
            drop(c);
            return false;
        }
    }

    void serve(item& c, uint32_t ev) {
        switch (c.k) {
        case kind::sink:
            discard_input(c);
            return;
        case kind::source:
            if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !discard_input(c)) {
                return;
            }
            for (int i = 0; i < 16; ++i) {
                ssize_t n = ::send(c.fd, _buf, buf_size, MSG_NOSIGNAL);
                if (n > 0) {
                    _out += static_cast<uint64_t>(n);
                    if (static_cast<size_t>(n) < buf_size) {
                        return;
                    }
                    continue;
                }
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                    return;
                }
                drop(c);
                return;
            }
            return;
        case kind::echo:
            echo(c, ev);
            return;
        case kind::listener:
            return;
        }
    }

    void echo(item& c, uint32_t ev) {
        if (c.pending != nullptr) {
            if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                return;
            }
            ssize_t n = ::send(c.fd, c.pending + c.pend_off, c.pend_len - c.pend_off, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                drop(c);
                return;
            }
            if (n > 0) {
                _out += static_cast<uint64_t>(n);
                c.pend_off += static_cast<size_t>(n);
            }
            if (c.pend_off < c.pend_len) {
                return;
            }
            std::free(c.pending);
            c.pending = nullptr;
            set_events(c, EPOLLIN);
        }
        for (;;) {
            ssize_t n = ::recv(c.fd, _buf, buf_size, 0);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                drop(c);
                return;
            }
            if (n < 0) {
                return;
            }
            _in += static_cast<uint64_t>(n);
            ssize_t w = ::send(c.fd, _buf, static_cast<size_t>(n), MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                drop(c);
                return;
            }
            w = std::max<ssize_t>(w, 0);
            _out += static_cast<uint64_t>(w);
            if (w < n) {
                // Backpressure: keep the rest, stop reading until it is written.
                c.pend_len = static_cast<size_t>(n - w);
                c.pend_off = 0;
                c.pending = static_cast<char*>(std::malloc(c.pend_len));
                std::memcpy(c.pending, _buf + w, c.pend_len);
                set_events(c, EPOLLOUT);
                return;
            }
        }
    }

    std::vector<item*> _listeners;
    std::unordered_set<item*> _conns;
    stats& _st;
    poller _poll;
    char* _buf = nullptr;
    uint64_t _in = 0, _out = 0;
};

std::string addr_str(int fd) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    char ip[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(sa.sin_port));
}

int run(int argc, char** argv) {
    args a(argc, argv, usage, {"echo", "sink", "source", "threads"}, {});
    install_stop_signals();
    raise_nofile();
    int threads = static_cast<int>(a.integer("threads", 1, 1, 256));
    struct spec {
        const char* name;
        kind k;
    };
    const spec specs[] = {{"echo", kind::echo}, {"sink", kind::sink}, {"source", kind::source}};
    std::vector<std::vector<item*>> per_thread(static_cast<size_t>(threads));
    json_line ready;
    ready.add("event", "listening");
    bool any = false;
    for (const auto& s : specs) {
        if (!a.has(s.name)) {
            continue;
        }
        any = true;
        sockaddr_in addr = parse_addr(a.str(s.name));
        for (int t = 0; t < threads; ++t) {
            int fd = listen_on(addr);
            if (t == 0) {
                // Port 0: every thread's listener shares the port the first one got.
                sockaddr_in got{};
                socklen_t len = sizeof got;
                getsockname(fd, reinterpret_cast<sockaddr*>(&got), &len);
                addr.sin_port = got.sin_port;
                ready.add(s.name, addr_str(fd));
            }
            per_thread[static_cast<size_t>(t)].push_back(new item{kind::listener, s.k, fd});
        }
    }
    if (!any) {
        a.fail("give at least one of --echo, --sink, --source");
    }
    ready.add("threads", threads).print();
    stats st;
    std::vector<std::thread> ts;
    for (auto& l : per_thread) {
        ts.emplace_back([&st, l] {
            server_thread s(l, st);
            s.run();
        });
    }
    for (auto& t : ts) {
        t.join();
    }
    json_line()
        .add("metric", "echo_stats")
        .add("accepted", st.accepted.load())
        .add("bytes_in", st.bytes_in.load())
        .add("bytes_out", st.bytes_out.load())
        .print();
    return 0;
}

} // namespace
} // namespace zt::bench

int main(int argc, char** argv) {
    return zt::bench::run(argc, argv);
}
