// The endpoint's event loop: one thread, epoll over non-blocking sockets (the endpoint runs on a client machine
// with a handful of connections, so clarity wins over the data plane's io_uring machinery), a monotonic clock read
// once per turn, and "tickers" that handle deadlines and sweep closed objects after each turn's events, so that no
// object is freed while an event of the same turn may still point at it.
#pragma once

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace zt::endpoint {

using ms_t = int64_t;

/// CLOCK_MONOTONIC in milliseconds.
ms_t monotonic_ms() noexcept;

/// How long to wait after `failures` failures in a row: `first` after one, doubling after each more, at most 10 s.
ms_t backoff_ms(ms_t first, unsigned failures) noexcept;

/// Something epoll reports to.
class io_handler {
public:
    virtual ~io_handler() = default;
    virtual void on_io(uint32_t events) = 0;
};

class loop {
public:
    loop();
    ~loop();
    loop(const loop&) = delete;
    loop& operator=(const loop&) = delete;

    bool valid() const noexcept { return _epfd >= 0; }
    /// Registers, changes or removes interest in `fd`.
    void watch(int fd, uint32_t events, io_handler* h) noexcept;
    void change(int fd, uint32_t events, io_handler* h) noexcept;
    void unwatch(int fd) noexcept;

    /// Called after every turn's events with the turn's time; returns the next time it needs to run (the loop
    /// sleeps at most until the earliest). std::function: a handful of tickers, registered at start-up.
    void add_ticker(std::function<ms_t(ms_t now)> f) { _tickers.push_back(std::move(f)); }

    ms_t now() const noexcept { return _now; }
    /// Runs until stop().
    void run();
    void stop() noexcept { _stop = true; }

private:
    int _epfd = -1;
    bool _stop = false;
    ms_t _now = 0;
    std::vector<std::function<ms_t(ms_t)>> _tickers;
};

/// One fd's registration: remembers the interest so that epoll_ctl runs only when it changes.
class fd_watch {
public:
    fd_watch() = default;
    fd_watch(const fd_watch&) = delete;
    fd_watch& operator=(const fd_watch&) = delete;
    ~fd_watch() { reset(); }

    /// Takes ownership of `fd`; it is registered while set() asks for events.
    void attach(loop& l, int fd, io_handler* h) noexcept;
    void set(uint32_t events) noexcept;
    /// Unregisters and closes the fd.
    void reset() noexcept;
    /// Unregisters and gives the fd back without closing it.
    int release() noexcept;
    int fd() const noexcept { return _fd; }

private:
    loop* _loop = nullptr;
    io_handler* _h = nullptr;
    int _fd = -1;
    uint32_t _events = 0;
};

/// Growable-by-nothing byte buffer with a fixed capacity: bytes are appended at the tail and consumed from the
/// head; free space is recovered by moving the remainder down when the tail is short.
class byte_buffer {
public:
    explicit byte_buffer(size_t capacity) : _data(capacity) {}
    size_t size() const noexcept { return _end - _begin; }
    bool empty() const noexcept { return _end == _begin; }
    size_t capacity() const noexcept { return _data.size(); }
    size_t room() const noexcept { return _data.size() - size(); }
    std::byte* data() noexcept { return _data.data() + _begin; }
    const std::byte* data() const noexcept { return _data.data() + _begin; }
    /// Free space at the tail (compacting first when that gains room).
    std::byte* tail() noexcept;
    size_t tail_room() const noexcept { return _data.size() - _end; }
    void commit(size_t n) noexcept { _end += n; }
    void consume(size_t n) noexcept;
    bool append(const void* p, size_t n) noexcept;
    void clear() noexcept { _begin = _end = 0; }

private:
    std::vector<std::byte> _data;
    size_t _begin = 0, _end = 0;
};

/// Socket helpers: non-blocking, close-on-exec, TCP_NODELAY on every TCP socket.
int tcp_connect_nonblocking(const ::sockaddr* sa, unsigned len, int& err) noexcept;
void set_nodelay(int fd) noexcept;
/// Closes with an RST (SO_LINGER 0): the peer learns the connection was cut, not finished.
void close_abort(int fd) noexcept;

} // namespace zt::endpoint
