// The table channel, data-plane side: connect with timeout and backoff,
// receive SCM_RIGHTS, refuse unsealed fds, map, validate, adopt, acknowledge.
#include "common/table/subscriber.hh"

#include "common/util/log.hh"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>

namespace zt::table {

namespace {

std::string errno_text(const char* what) {
    return fmt::format("{}: {}", what, std::strerror(errno));
}

std::string open_text(const open_result& r) {
    return fmt::format("{} at byte {}: {}", to_string(r.error), r.offset, r.reason);
}

int ms_until(std::chrono::steady_clock::time_point t, std::chrono::steady_clock::time_point now) {
    // Round up: a wait rounded down to 0 ms would spin until the deadline.
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - now).count();
    return ms <= 0 ? 0 : int(std::min<int64_t>(ms, 1 << 30));
}

} // namespace

subscriber::subscriber(holder& h, subscriber_options o)
    : _holder(h), _o(std::move(o)), _backoff_ms(std::max<uint32_t>(1, _o.backoff_initial_ms)) {
    _next_attempt = clock::now();
    _next_collect = _next_attempt;
}

subscriber::~subscriber() {
    if (_fd >= 0) {
        ::close(_fd);
    }
}

short subscriber::events() const noexcept {
    switch (_state) {
    case state::connecting:
        return POLLOUT;
    case state::connected:
        return short(POLLIN | (_ack_pending || _metrics_pending ? POLLOUT : 0));
    case state::idle:
        break;
    }
    return 0;
}

int subscriber::timeout_ms() const noexcept {
    auto now = clock::now();
    int t = -1;
    if (_state == state::idle) {
        t = ms_until(_next_attempt, now);
    } else if (_state == state::connecting) {
        t = ms_until(_connect_deadline, now);
    }
    if (_holder.retained() > 1) {
        int c = ms_until(_next_collect, now);
        t = t < 0 ? c : std::min(t, c);
    }
    return t;
}

void subscriber::on_timer() {
    auto now = clock::now();
    if (_holder.retained() > 1 && now >= _next_collect) {
        _holder.collect();
        _next_collect = now + std::chrono::milliseconds(_o.collect_interval_ms);
    }
    if (_state == state::idle && now >= _next_attempt) {
        start_connect();
    } else if (_state == state::connecting && now >= _connect_deadline) {
        disconnect(fmt::format("connect to {}: timed out after {} ms", _o.socket_path, _o.connect_timeout_ms));
    }
}

void subscriber::run_once(int max_wait_ms) {
    int t = timeout_ms();
    t = t < 0 ? max_wait_ms : std::min(t, max_wait_ms);
    pollfd p{_fd, events(), 0};
    int n = ::poll(&p, 1, t);
    if (n > 0 && p.revents != 0 && p.fd >= 0) {
        on_ready(p.revents);
    }
    on_timer();
}

void subscriber::start_connect() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (_o.socket_path.size() >= sizeof addr.sun_path) {
        disconnect(fmt::format("socket path too long: {}", _o.socket_path));
        return;
    }
    std::memcpy(addr.sun_path, _o.socket_path.c_str(), _o.socket_path.size() + 1);
    _fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (_fd < 0) {
        disconnect(errno_text("socket"));
        return;
    }
    if (::connect(_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        connected_now();
    } else if (errno == EINPROGRESS || errno == EAGAIN) {
        // The listener's backlog is full: wait for it, but not forever.
        _state = state::connecting;
        _connect_deadline = clock::now() + std::chrono::milliseconds(_o.connect_timeout_ms);
    } else {
        disconnect(fmt::format("connect to {}: {}", _o.socket_path, std::strerror(errno)));
    }
}

void subscriber::connected_now() {
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(_fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
        disconnect(errno_text("SO_PEERCRED"));
        return;
    }
    // Only our own user (or root) may hand us tables.
    if (peer.uid != 0 && peer.uid != ::geteuid()) {
        disconnect(fmt::format("{} is served by uid {}, not by us or root", _o.socket_path, peer.uid));
        return;
    }
    _state = state::connected;
    _backoff_ms = std::max<uint32_t>(1, _o.backoff_initial_ms);
    _ack_pending = false;
    _metrics_pending = _metrics_fd >= 0;
    flush_metrics();
    if (_state != state::connected) {
        return;
    }
    if (_failures > 0) {
        log::info("Table: connected to {} (control pid {}) after {} failed attempts", _o.socket_path, peer.pid,
                  _failures);
    } else {
        log::debug("Table: connected to {} (control pid {})", _o.socket_path, peer.pid);
    }
    _failures = 0;
}

void subscriber::disconnect(const std::string& why) {
    if (_fd >= 0) {
        ::close(_fd);
        _fd = -1;
    }
    bool was_connected = _state == state::connected;
    _state = state::idle;
    _ack_pending = false;
    _last_error = why;
    // Warn at the first failure of a streak; the rest would only repeat it.
    if (was_connected || _failures == 0) {
        log::warn("Table: {}; retrying (the current table keeps serving)", why);
    } else {
        log::debug("Table: {}", why);
    }
    ++_failures;
    auto jitter = _backoff_ms / 4 ? uint32_t(uint64_t(clock::now().time_since_epoch().count()) % (_backoff_ms / 4)) : 0;
    _next_attempt = clock::now() + std::chrono::milliseconds(was_connected ? 0 : _backoff_ms + jitter);
    if (!was_connected) {
        _backoff_ms = std::min(_backoff_ms * 2, std::max<uint32_t>(1, _o.backoff_max_ms));
    }
}

void subscriber::on_ready(short revents) {
    if (_fd < 0) {
        return;
    }
    if (_state == state::connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            disconnect(fmt::format("connect to {}: {}", _o.socket_path, std::strerror(err ? err : errno)));
        } else if (revents & (POLLOUT | POLLERR | POLLHUP)) {
            connected_now();
        }
        return;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        receive(); // reads until EAGAIN; sees EOF / errors itself
    }
    if (_fd >= 0 && (revents & POLLOUT)) {
        flush_metrics();
        flush_ack();
    }
}

void subscriber::receive() {
    for (;;) {
        alignas(channel::table_msg) char buf[256];
        constexpr size_t max_fds = 8;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds)];
        iovec iov{buf, sizeof buf};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = ::recvmsg(_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }
            disconnect(errno_text("table socket receive"));
            return;
        }
        if (n == 0) {
            disconnect(fmt::format("control closed {}", _o.socket_path));
            return;
        }
        int fds[max_fds];
        size_t nfds = 0;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k && nfds < max_fds; ++i) {
                    std::memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                }
            }
        }
        channel::table_msg m;
        bool well_formed = size_t(n) == sizeof m && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC));
        if (well_formed) {
            std::memcpy(&m, buf, sizeof m);
            well_formed =
                m.magic == channel::magic && m.version == channel::version && m.type == channel::msg_type::table;
        }
        std::string err;
        if (!well_formed) {
            err = "malformed table message";
        } else if (nfds != 1) {
            err = fmt::format("table message with {} fds, expected 1", nfds);
        } else {
            err = adopt(fds[0], m);
        }
        for (size_t i = 0; i < nfds; ++i) {
            ::close(fds[i]);
        }
        if (!well_formed) {
            disconnect(fmt::format("{} from {}", err, _o.socket_path));
            return;
        }
        if (!err.empty()) {
            ++_rejected;
            _last_error = fmt::format("generation {} rejected: {}", m.generation, err);
            log::warn("Table: {}", _last_error);
        }
        send_ack(m.generation, err);
        if (_fd < 0) {
            return;
        }
    }
}

std::string subscriber::adopt(int memfd, const channel::table_msg& m) {
    int seals = ::fcntl(memfd, F_GET_SEALS);
    if (seals < 0) {
        return fmt::format("not a sealable memfd ({})", std::strerror(errno));
    }
    if ((seals & channel::required_seals) != channel::required_seals) {
        // Unsealed, the sender could change the bytes after we validate them.
        return fmt::format("memfd not sealed (seals {:#x}, need {:#x})", seals, channel::required_seals);
    }
    struct stat st {};
    if (::fstat(memfd, &st) != 0) {
        return errno_text("fstat");
    }
    if (uint64_t(st.st_size) != m.size) {
        return fmt::format("memfd holds {} bytes, message says {}", st.st_size, m.size);
    }
    if (m.size < sizeof(format::header) || m.size > format::max_table_size) {
        return fmt::format("table size {} out of range", m.size);
    }
    void* addr = ::mmap(nullptr, m.size, PROT_READ, MAP_SHARED, memfd, 0);
    if (addr == MAP_FAILED) {
        return errno_text("mmap");
    }
    blob b = blob::adopt_mapping(addr, m.size);
    open_result r = open(b.bytes());
    if (!r.ok()) {
        return open_text(r);
    }
    if (r.view.generation() != m.generation) {
        return fmt::format("table has generation {}, message says {}", r.view.generation(), m.generation);
    }
    return install(std::move(b), r.view);
}

std::string subscriber::install(blob&& b, const table& view) {
    if (_generation != 0 && view.generation() < _generation) {
        return fmt::format("generation {} is older than the adopted {}", view.generation(), _generation);
    }
    if (_generation != 0 && view.generation() == _generation) {
        // Same table again (control restarted, or the file we started from).
        return view.checksum() == _checksum
                   ? std::string()
                   : fmt::format("generation {} already adopted with other content", _generation);
    }
    _generation = view.generation();
    _checksum = view.checksum();
    ++_adopted;
    log::info("Table: adopted generation {} ({} zones, {} services, {} endpoints, {} bytes)", view.generation(),
              view.zone_count(), view.service_count(), view.endpoint_count(), view.bytes().size());
    _holder.publish(std::move(b), view);
    _next_collect = clock::now() + std::chrono::milliseconds(_o.collect_interval_ms);
    return {};
}

void subscriber::send_ack(uint64_t generation, const std::string& error) {
    _ack = channel::ack_msg{};
    _ack.generation = generation;
    _ack.status = error.empty() ? channel::ack_status::adopted : channel::ack_status::rejected;
    std::memcpy(_ack.reason, error.data(), std::min(error.size(), sizeof _ack.reason - 1));
    _ack_pending = true;
    flush_ack();
}

void subscriber::flush_ack() {
    if (!_ack_pending || _fd < 0) {
        return;
    }
    ssize_t n = ::send(_fd, &_ack, sizeof _ack, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == ssize_t(sizeof _ack)) {
        _ack_pending = false;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        disconnect(errno_text("table socket send"));
    }
    // EAGAIN: events() asks for POLLOUT; only the latest ack is kept.
}

void subscriber::flush_metrics() {
    if (!_metrics_pending || _fd < 0) {
        return;
    }
    channel::metrics_msg m;
    ssize_t n = channel::send_with_fd(_fd, &m, sizeof m, _metrics_fd);
    if (n == ssize_t(sizeof m)) {
        _metrics_pending = false;
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        disconnect(errno_text("table socket send"));
    }
}

std::string subscriber::load_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fmt::format("{}: {}", path, std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        std::string e = fmt::format("{}: {}", path, std::strerror(errno));
        ::close(fd);
        return e;
    }
    if (uint64_t(st.st_size) < sizeof(format::header) || uint64_t(st.st_size) > format::max_table_size) {
        ::close(fd);
        return fmt::format("{}: {} bytes is not a route table size", path, st.st_size);
    }
    blob b = blob::allocate(size_t(st.st_size));
    auto out = b.writable();
    size_t got = 0;
    while (got < out.size()) {
        ssize_t n = ::read(fd, out.data() + got, out.size() - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            std::string e = n == 0 ? fmt::format("{}: shorter than its size", path)
                                   : fmt::format("{}: {}", path, std::strerror(errno));
            ::close(fd);
            return e;
        }
        got += size_t(n);
    }
    ::close(fd);
    open_result r = open(b.bytes());
    if (!r.ok()) {
        return fmt::format("{}: {}", path, open_text(r));
    }
    if (_generation != 0 && r.view.generation() <= _generation) {
        return {}; // we already have this one or a newer one
    }
    std::string err = install(std::move(b), r.view);
    return err.empty() ? err : fmt::format("{}: {}", path, err);
}

} // namespace zt::table
