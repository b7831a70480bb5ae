// The endpoint's epoll loop (see loop.hh).
#include "tools/endpoint/loop.hh"

#include "common/util/log.hh"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace zt::endpoint {

ms_t monotonic_ms() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ms_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

ms_t backoff_ms(ms_t first, unsigned failures) noexcept {
    constexpr ms_t most = 10000;
    ms_t d = first;
    for (unsigned i = 1; i < failures && d < most; ++i) {
        d *= 2;
    }
    return std::min(d, most);
}

loop::loop() : _epfd(::epoll_create1(EPOLL_CLOEXEC)), _now(monotonic_ms()) {}

loop::~loop() {
    if (_epfd >= 0) {
        ::close(_epfd);
    }
}

void loop::watch(int fd, uint32_t events, io_handler* h) noexcept {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = h;
    if (::epoll_ctl(_epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        log::error("Endpoint: epoll_ctl add {}: {}", fd, std::strerror(errno));
    }
}

void loop::change(int fd, uint32_t events, io_handler* h) noexcept {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = h;
    ::epoll_ctl(_epfd, EPOLL_CTL_MOD, fd, &ev);
}

void loop::unwatch(int fd) noexcept {
    ::epoll_ctl(_epfd, EPOLL_CTL_DEL, fd, nullptr);
}

void loop::run() {
    constexpr int batch = 64;
    epoll_event events[batch];
    ms_t next = _now;
    _stop = false;
    while (!_stop) {
        int timeout = static_cast<int>(std::clamp<ms_t>(next - monotonic_ms(), 0, 1000));
        int n = ::epoll_wait(_epfd, events, batch, timeout);
        if (n < 0 && errno != EINTR) {
            log::error("Endpoint: epoll_wait: {}", std::strerror(errno));
            return;
        }
        _now = monotonic_ms();
        for (int i = 0; i < n; ++i) {
            static_cast<io_handler*>(events[i].data.ptr)->on_io(events[i].events);
        }
        _now = monotonic_ms();
        next = _now + 1000;
        for (auto& t : _tickers) {
            next = std::min(next, t(_now));
        }
    }
}

void fd_watch::attach(loop& l, int fd, io_handler* h) noexcept {
    reset();
    _loop = &l;
    _h = h;
    _fd = fd;
    _events = 0;
}

// No interest means not registered at all: epoll reports EPOLLHUP and EPOLLERR even to an empty mask, and a
// finished socket that waits for the other side of a tunnel would wake every turn.
void fd_watch::set(uint32_t events) noexcept {
    if (_fd < 0 || events == _events) {
        return;
    }
    if (_events == 0) {
        _loop->watch(_fd, events, _h);
    } else if (events == 0) {
        _loop->unwatch(_fd);
    } else {
        _loop->change(_fd, events, _h);
    }
    _events = events;
}

int fd_watch::release() noexcept {
    int fd = _fd;
    if (_fd >= 0 && _events != 0) {
        _loop->unwatch(_fd);
    }
    _fd = -1;
    _events = 0;
    return fd;
}

void fd_watch::reset() noexcept {
    int fd = release();
    if (fd >= 0) {
        ::close(fd);
    }
}

std::byte* byte_buffer::tail() noexcept {
    if (_begin > 0 && tail_room() < _data.size() / 2) {
        std::memmove(_data.data(), _data.data() + _begin, size());
        _end -= _begin;
        _begin = 0;
    }
    return _data.data() + _end;
}

void byte_buffer::consume(size_t n) noexcept {
    _begin += std::min(n, size());
    if (_begin == _end) {
        _begin = _end = 0;
    }
}

bool byte_buffer::append(const void* p, size_t n) noexcept {
    if (n > room()) {
        return false;
    }
    if (n > tail_room()) {
        std::memmove(_data.data(), _data.data() + _begin, size());
        _end -= _begin;
        _begin = 0;
    }
    std::memcpy(_data.data() + _end, p, n);
    _end += n;
    return true;
}

int tcp_connect_nonblocking(const sockaddr* sa, unsigned len, int& err) noexcept {
    int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = errno;
        return -1;
    }
    set_nodelay(fd);
    if (::connect(fd, sa, len) != 0 && errno != EINPROGRESS) {
        err = errno;
        ::close(fd);
        return -1;
    }
    err = 0;
    return fd;
}

void set_nodelay(int fd) noexcept {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void close_abort(int fd) noexcept {
    linger l{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    ::close(fd);
}

} // namespace zt::endpoint
