// The one file that knows liburing: ring setup with the flags the kernel has,
// an opcode probe that refuses to start with a clear message, provided buffer
// rings (liburing 2.3 lacks io_uring_setup_buf_ring), and the user_data
// encoding `op | slot generation | slot index`, so a completion that arrives
// for a recycled slot is recognised and dropped. One ring per shard thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

struct io_uring;
struct io_uring_sqe;
struct io_uring_buf_ring;
struct sockaddr;
struct msghdr;

namespace zt::net {

/// What a completion is for; the handler switches on it.
enum class op : uint8_t {
    none,
    accept,
    recv,
    send,
    connect,
    timeout,
    cancel,
    close,
    splice,
    recvmsg,
    sendmsg,
    wake,
    upstream,     ///< a datagram from an upstream resolver
    backend_recv, ///< the proxy's service side
    backend_send,
    upstream_tcp, ///< a retry over TCP of a truncated upstream answer
    poll_up,      ///< kTLS tunnel, client -> service: a socket is ready
    poll_down,    ///< kTLS tunnel, service -> client: a socket is ready
};

/// user_data: op in bits 56-63, slot generation in 32-55, slot index in 0-31.
struct tag {
    op kind = op::none;
    uint32_t generation = 0; ///< 24 bits used
    uint32_t index = 0;
    uint64_t encode() const noexcept {
        return uint64_t(kind) << 56 | uint64_t(generation & 0xffffff) << 32 | index;
    }
    static tag decode(uint64_t v) noexcept {
        return {static_cast<op>(v >> 56), static_cast<uint32_t>(v >> 32) & 0xffffff, static_cast<uint32_t>(v)};
    }
};

/// One completion, decoded.
struct completion {
    tag t;
    int32_t res;
    uint32_t flags;
    bool more() const noexcept;       ///< a multishot request stays armed
    bool has_buffer() const noexcept; ///< res bytes are in a provided buffer
    uint16_t buffer_id() const noexcept;
};

/// A socket can live in the ring's own file table (a "direct descriptor")
/// instead of the process's fd table, so it does not count against
/// RLIMIT_NOFILE. Its handle is the table slot with this bit set; every
/// request below takes such a handle wherever it takes an fd (not the kernel
/// TLS path's plain syscalls: those need a real fd).
inline constexpr int direct_bit = 1 << 30;
constexpr bool is_direct(int fd) noexcept {
    return fd >= 0 && (fd & direct_bit) != 0;
}

/// A kernel timespec that must outlive its timeout request.
struct timeout_spec {
    int64_t tv_sec;
    long long tv_nsec;
};

class ring {
public:
    /// Sets up a ring with `entries` SQEs. Returns nullptr and sets `err` if
    /// io_uring is unavailable or lacks an opcode we need (named in `err`).
    static std::unique_ptr<ring> create(unsigned entries, std::string& err);
    ~ring();
    ring(const ring&) = delete;
    ring& operator=(const ring&) = delete;

    /// Whether the kernel has splice through io_uring (the kTLS fast path).
    bool has_splice() const noexcept { return _has_splice; }

    // ---- direct descriptors ----
    /// Registers an empty file table of `slots` entries. False and `err` when
    /// the kernel cannot (then sockets stay in the process's fd table).
    bool enable_direct(uint32_t slots, std::string& err) noexcept;
    /// Moves socket `fd` into table slot `slot` and closes `fd`: returns the
    /// handle, or -errno (and `fd` is still the caller's).
    int make_direct(int fd, uint32_t slot) noexcept;
    /// Empties the handle's slot at once (a syscall, so the slot can be reused
    /// right away); the socket closes when no request holds it any more.
    void close_direct(int handle) noexcept;

    // ---- requests (queued; submitted by wait()) ----
    void accept_multishot(int fd, tag t) noexcept;
    void recv(int fd, void* buf, uint32_t len, tag t) noexcept;
    /// One recv into a buffer of group `group` (the kernel picks it when data arrives).
    void recv_provided(int fd, uint16_t group, tag t) noexcept;
    /// Multishot recv into buffer group `group`.
    void recv_multishot(int fd, uint16_t group, tag t) noexcept;
    void send(int fd, const void* buf, uint32_t len, tag t) noexcept;
    void sendmsg(int fd, const msghdr* msg, tag t) noexcept;
    void recvmsg(int fd, msghdr* msg, tag t) noexcept;
    void connect(int fd, const sockaddr* addr, uint32_t len, tag t) noexcept;
    /// connect() linked to a timeout: the connect is cancelled (-ECANCELED) after `ts`.
    void connect_with_timeout(int fd, const sockaddr* addr, uint32_t len, tag t, const timeout_spec* ts) noexcept;
    void timeout(const timeout_spec* ts, tag t) noexcept;
    /// Cancels every request whose user_data is `target`.
    void cancel(tag target) noexcept;
    void cancel_fd(int fd) noexcept;
    void close(int fd) noexcept;
    /// shutdown(2) as a request (completes as op::none); for direct descriptors.
    void shutdown(int fd, int how) noexcept;
    void splice(int fd_in, int fd_out, uint32_t len, tag t) noexcept;
    /// One-shot readiness: completes with the poll mask when `fd` has `events` (POLLIN, POLLOUT).
    void poll(int fd, uint32_t events, tag t) noexcept;
    /// Reads the eventfd `fd` into `buf` (8 bytes) to wake the loop from another thread.
    void read_eventfd(int fd, uint64_t* buf, tag t) noexcept;

    /// When asked to (poll_next_wait()), the next wait() first polls for
    /// completions for up to `us` microseconds before it sleeps: a message
    /// that arrives meanwhile is seen without the wake-up of an idle core
    /// (tens of microseconds in a VM). 0: never. Polling only pays while it
    /// finds something early: a score (0..16, starting at 8) goes up by one
    /// for a completion found in the first half of the window and down by
    /// one for a miss or a late find; below 8 the ring polls only one
    /// asked-for wait in eight, until the score is back.
    void set_busy_poll(uint32_t us) noexcept { _busy_poll_ns = uint64_t(us) * 1000; }
    /// Polls that found a completion, and polls that ran out and slept.
    uint64_t poll_hits() const noexcept { return _poll_hits; }
    uint64_t poll_misses() const noexcept { return _poll_misses; }
    /// The owner expects a completion soon (e.g. it just relayed a request):
    /// the next wait() polls first.
    void poll_next_wait() noexcept { _poll_next = true; }

    /// Submits what is queued now, without waiting (wait() submits too): for
    /// an owner whose turn runs long, so that replies it queued early leave
    /// before the turn ends.
    void submit() noexcept;

    /// Submits what is queued and waits up to `timeout_ms` for at least one
    /// completion; then calls `f(const completion&)` for each that was there
    /// and returns the count. Completions posted meanwhile (by an early
    /// submit()) wait for the next call, so a turn ends even under a flood.
    template <typename F>
    unsigned wait(int timeout_ms, F&& f) noexcept {
        submit_and_wait(timeout_ms);
        const unsigned ready = cq_ready();
        unsigned n = 0;
        completion c;
        while (n < ready && peek(c)) {
            f(c);
            ++n;
        }
        return n;
    }

    // ---- provided buffers ----
    /// Registers buffer group `group`: `count` (power of two) buffers of
    /// `size` bytes. False and `err` on failure.
    bool add_buffer_group(uint16_t group, uint32_t count, uint32_t size, std::string& err) noexcept;
    std::byte* buffer(uint16_t group, uint16_t id) const noexcept;
    /// Gives a buffer back to the kernel.
    void recycle(uint16_t group, uint16_t id) noexcept;

private:
    ring() = default;
    io_uring_sqe* next_sqe() noexcept;
    void submit_and_wait(int timeout_ms) noexcept;
    unsigned cq_ready() const noexcept;
    bool peek(completion& c) noexcept;

    struct group_state {
        io_uring_buf_ring* br = nullptr;
        std::byte* base = nullptr;
        uint32_t count = 0;
        uint32_t size = 0;
        size_t map_len = 0;
    };
    std::unique_ptr<io_uring> _ring;
    group_state _groups[4];
    bool _has_splice = false;
    uint64_t _busy_poll_ns = 0;
    bool _poll_next = false;
    /// 0..16: +1 per early hit, -1 per miss or late hit; polls while at least 8.
    uint8_t _poll_score = 8;
    void score_poll(bool paid) noexcept {
        _poll_score = static_cast<uint8_t>(paid ? std::min(_poll_score + 1, 16) : std::max(_poll_score - 1, 0));
    }
    uint8_t _poll_probe = 0;
    uint64_t _poll_hits = 0;
    uint64_t _poll_misses = 0;
};

} // namespace zt::net
