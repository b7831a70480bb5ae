// The table channel, control side: sealed memfds over SCM_RIGHTS.
#include "control/table/publisher.hh"

#include "common/table/channel.hh"
#include "common/table/reader.hh"
#include "common/util/fs.hh"
#include "common/util/log.hh"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>
#include <fmt/format.h>

namespace zt::control {

namespace ch = table::channel;

publisher::publisher(size_t max_subscribers) : _max_subscribers(max_subscribers) {}

publisher::~publisher() {
    for (auto& c : _conns) {
        ::close(c.fd);
    }
    if (_listen_fd >= 0) {
        ::close(_listen_fd);
        ::unlink(_path.c_str());
    }
    if (_memfd >= 0) {
        ::close(_memfd);
    }
}

std::string publisher::listen(const std::string& path) {
    if (_listen_fd >= 0) {
        return "table socket: already listening on " + _path;
    }
    // Bind a temporary name, make it 0600, then rename it into place: the
    // socket is never reachable under `path` with looser permissions.
    std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (tmp.size() >= sizeof addr.sun_path) {
        return fmt::format("table socket: path too long: {}", path);
    }
    std::memcpy(addr.sun_path, tmp.c_str(), tmp.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return fmt::format("table socket: socket: {}", std::strerror(errno));
    }
    ::unlink(tmp.c_str());
    auto fail = [&](const char* step) {
        std::string e = fmt::format("table socket {}: {}: {}", path, step, std::strerror(errno));
        ::close(fd);
        ::unlink(tmp.c_str());
        return e;
    };
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        return fail("bind");
    }
    if (::chmod(tmp.c_str(), 0600) != 0) {
        return fail("chmod");
    }
    if (::listen(fd, 16) != 0) {
        return fail("listen");
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        return fail("rename");
    }
    _listen_fd = fd;
    _path = path;
    return {};
}

std::string publisher::publish(std::span<const std::byte> blob) {
    auto r = table::open(blob);
    if (!r.ok()) {
        return fmt::format("route table does not validate: {} at byte {}: {}", table::to_string(r.error), r.offset,
                           r.reason);
    }
    int fd = ::memfd_create("ztdns-table", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return fmt::format("memfd_create: {}", std::strerror(errno));
    }
    size_t done = 0;
    while (done < blob.size()) {
        ssize_t n = ::write(fd, blob.data() + done, blob.size() - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            std::string e = fmt::format("memfd write: {}", std::strerror(errno));
            ::close(fd);
            return e;
        }
        done += size_t(n);
    }
    if (::fcntl(fd, F_ADD_SEALS, ch::required_seals) != 0) {
        std::string e = fmt::format("memfd seal: {}", std::strerror(errno));
        ::close(fd);
        return e;
    }
    if (_memfd >= 0) {
        ::close(_memfd);
    }
    _memfd = fd;
    _generation = r.view.generation();
    _size = blob.size();
    for (auto& c : _conns) {
        c.want_send = true;
    }
    for (size_t i = _conns.size(); i-- > 0;) {
        send_current(_conns[i]);
        if (_conns[i].fd < 0) {
            drop(i, "send failed");
        }
    }
    return {};
}

std::vector<pollfd> publisher::poll_fds() const {
    std::vector<pollfd> out;
    out.reserve(_conns.size() + 1);
    if (_listen_fd >= 0) {
        out.push_back({_listen_fd, POLLIN, 0});
    }
    for (const auto& c : _conns) {
        out.push_back({c.fd, short(POLLIN | (c.want_send && !c.in_flight ? POLLOUT : 0)), 0});
    }
    return out;
}

void publisher::on_poll(const pollfd& p) {
    if (p.revents == 0) {
        return;
    }
    if (p.fd == _listen_fd && _listen_fd >= 0) {
        accept_all();
        return;
    }
    for (size_t i = 0; i < _conns.size(); ++i) {
        conn& c = _conns[i];
        if (c.fd != p.fd) {
            continue;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            read_acks(c); // an ack may let the newest table go out
        }
        if (c.fd >= 0 && c.want_send) {
            send_current(c);
        }
        if (c.fd < 0) {
            drop(i, "disconnected");
        }
        return;
    }
}

void publisher::run_once(int max_wait_ms) {
    auto fds = poll_fds();
    if (::poll(fds.data(), fds.size(), max_wait_ms) > 0) {
        for (const auto& p : fds) {
            on_poll(p);
        }
    }
}

std::vector<table_subscriber> publisher::subscribers() const {
    std::vector<table_subscriber> out;
    out.reserve(_conns.size());
    for (const auto& c : _conns) {
        out.push_back(c.info);
        if (c.metrics.valid()) {
            auto& s = out.back();
            s.counters = true;
            s.connections_active = c.metrics.total("connections_active");
            s.queries = c.metrics.total("queries");
            s.tunnels_open = c.metrics.total("tunnels_active");
        }
    }
    return out;
}

void publisher::accept_all() {
    for (;;) {
        int fd = ::accept4(_listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                log::warn("Control: table socket accept: {}", std::strerror(errno));
            }
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return;
        }
        if (_conns.size() >= _max_subscribers) {
            log::warn("Control: table socket: {} subscribers already, refusing another", _conns.size());
            ::close(fd);
            continue;
        }
        conn c;
        c.fd = fd;
        c.info.id = _next_id++;
        ucred peer{};
        socklen_t len = sizeof peer;
        if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0) {
            c.info.pid = peer.pid;
            c.info.uid = peer.uid;
        }
        log::info("Control: data plane pid {} subscribed to route tables", c.info.pid);
        c.want_send = _memfd >= 0;
        _conns.push_back(std::move(c));
        send_current(_conns.back());
        if (_conns.back().fd < 0) {
            drop(_conns.size() - 1, "send failed");
        }
    }
}

void publisher::send_current(conn& c) {
    if (!c.want_send || c.in_flight || _memfd < 0 || c.fd < 0) {
        return;
    }
    ch::table_msg m;
    m.generation = _generation;
    m.size = _size;
    ssize_t n = ch::send_with_fd(c.fd, &m, sizeof m, _memfd);
    if (n == ssize_t(sizeof m)) {
        c.want_send = false;
        c.in_flight = true;
        c.info.sent = _generation;
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return; // POLLOUT resumes it
    }
    log::warn("Control: table socket: sending generation {} to pid {}: {}", _generation, c.info.pid,
              n < 0 ? std::strerror(errno) : "short send");
    ::close(c.fd);
    c.fd = -1;
}

void publisher::read_acks(conn& c) {
    auto malformed = [&] {
        log::warn("Control: table socket: malformed message from pid {}, disconnecting", c.info.pid);
        ::close(c.fd);
        c.fd = -1;
    };
    for (;;) {
        alignas(8) char buf[sizeof(ch::ack_msg)];
        iovec iov{buf, sizeof buf};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(c.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            ::close(c.fd);
            c.fd = -1;
            return;
        }
        // Every fd that came along is ours to close, whatever the message.
        std::vector<int> fds;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
                size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < count; ++i) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                    fds.push_back(fd);
                }
            }
        }
        auto close_fds = [&] {
            for (int fd : fds) {
                ::close(fd);
            }
        };
        ch::metrics_msg head; // the fields every message starts with
        if (size_t(n) < sizeof head) {
            close_fds();
            malformed();
            return;
        }
        std::memcpy(&head, buf, sizeof head);
        if (head.magic != ch::magic || head.version != ch::version) {
            close_fds();
            malformed();
            return;
        }
        if (head.type == ch::msg_type::metrics) {
            if (size_t(n) != sizeof head || fds.size() != 1 || (msg.msg_flags & MSG_CTRUNC)) {
                close_fds();
                malformed();
                return;
            }
            if (auto e = c.metrics.open(fds[0]); !e.empty()) {
                log::warn("Control: data plane pid {}: {}", c.info.pid, e);
            }
            close_fds(); // the mapping stays
            continue;
        }
        close_fds();
        if (size_t(n) != sizeof(ch::ack_msg) || head.type != ch::msg_type::ack) {
            malformed();
            return;
        }
        ch::ack_msg a;
        std::memcpy(&a, buf, sizeof a);
        a.reason[sizeof a.reason - 1] = '\0';
        if (a.generation == c.info.sent) {
            c.in_flight = false;
        }
        if (a.status == ch::ack_status::adopted) {
            c.info.adopted = std::max(c.info.adopted, a.generation);
        } else {
            c.info.rejected = a.generation;
            c.info.error = a.reason;
            log::error("Control: data plane pid {} rejected route table generation {}: {}", c.info.pid, a.generation,
                       c.info.error);
        }
    }
}

std::string publisher::metrics_text() const {
    std::vector<const metrics::view*> views;
    std::vector<int> pids;
    for (const auto& c : _conns) {
        if (c.metrics.valid()) {
            views.push_back(&c.metrics);
            pids.push_back(int(c.info.pid));
        }
    }
    return metrics::render_prometheus(views, pids);
}

void publisher::drop(size_t i, const char* why) {
    log::info("Control: data plane pid {} unsubscribed ({})", _conns[i].info.pid, why);
    if (_conns[i].fd >= 0) {
        ::close(_conns[i].fd);
    }
    _conns.erase(_conns.begin() + ptrdiff_t(i));
}

std::string save_table_file(const std::string& path, std::span<const std::byte> blob) {
    return fs::write_atomic(path, std::span<const char>(reinterpret_cast<const char*>(blob.data()), blob.size()), 0644);
}

} // namespace zt::control
