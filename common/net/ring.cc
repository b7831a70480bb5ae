// io_uring setup, probing, requests and provided buffer rings (see ring.hh).
#include "common/net/ring.hh"

#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

namespace zt::net {

bool completion::more() const noexcept { return flags & IORING_CQE_F_MORE; }
bool completion::has_buffer() const noexcept { return flags & IORING_CQE_F_BUFFER; }
uint16_t completion::buffer_id() const noexcept { return static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT); }

std::unique_ptr<ring> ring::create(unsigned entries, std::string& err) {
    std::unique_ptr<ring> r(new ring);
    r->_ring = std::make_unique<io_uring>();
    io_uring_params p{};
    p.cq_entries = entries * 4;
    // Newest flags first; older kernels reject what they do not know.
    const unsigned tries[] = {
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_CQSIZE,
    };
    int rc = -EINVAL;
    for (unsigned flags : tries) {
        p = {};
        p.cq_entries = entries * 4;
        p.flags = flags;
        rc = io_uring_queue_init_params(entries, r->_ring.get(), &p);
        if (rc != -EINVAL) {
            break;
        }
    }
    if (rc < 0) {
        err = fmt::format("io_uring is not available: {}", std::strerror(-rc));
        return nullptr;
    }
    io_uring_probe* probe = io_uring_get_probe_ring(r->_ring.get());
    if (!probe) {
        err = "io_uring opcode probe failed (kernel older than 5.6?)";
        io_uring_queue_exit(r->_ring.get());
        return nullptr;
    }
    struct need {
        int opcode;
        const char* name;
    };
    const need needed[] = {
        {IORING_OP_ACCEPT, "ACCEPT"},       {IORING_OP_RECV, "RECV"},
        {IORING_OP_SEND, "SEND"},           {IORING_OP_CONNECT, "CONNECT"},
        {IORING_OP_TIMEOUT, "TIMEOUT"},     {IORING_OP_LINK_TIMEOUT, "LINK_TIMEOUT"},
        {IORING_OP_ASYNC_CANCEL, "CANCEL"}, {IORING_OP_CLOSE, "CLOSE"},
        {IORING_OP_READ, "READ"},           {IORING_OP_SENDMSG, "SENDMSG"},
        {IORING_OP_RECVMSG, "RECVMSG"},     {IORING_OP_POLL_ADD, "POLL_ADD"},
    };
    for (const auto& n : needed) {
        if (!io_uring_opcode_supported(probe, n.opcode)) {
            err = fmt::format("this kernel's io_uring lacks IORING_OP_{}; ztdns needs Linux 6.0 or newer", n.name);
            io_uring_free_probe(probe);
            io_uring_queue_exit(r->_ring.get());
            return nullptr;
        }
    }
    r->_has_splice = io_uring_opcode_supported(probe, IORING_OP_SPLICE);
    io_uring_free_probe(probe);
    return r;
}

ring::~ring() {
    for (uint16_t g = 0; g < 4; ++g) {
        if (_groups[g].br) {
            io_uring_unregister_buf_ring(_ring.get(), g);
            munmap(_groups[g].br, _groups[g].map_len);
        }
    }
    io_uring_queue_exit(_ring.get());
}

namespace {

/// Points the request at the ring's file table when `fd` is a direct handle.
void use_fd(io_uring_sqe* sqe, int fd) noexcept {
    if (is_direct(fd)) {
        sqe->fd = fd & ~direct_bit;
        sqe->flags |= IOSQE_FIXED_FILE;
    }
}

} // namespace

bool ring::enable_direct(uint32_t slots, std::string& err) noexcept {
    if (int rc = io_uring_register_files_sparse(_ring.get(), slots); rc < 0) {
        err = fmt::format("cannot register a file table of {} slots: {}", slots, std::strerror(-rc));
        return false;
    }
    return true;
}

int ring::make_direct(int fd, uint32_t slot) noexcept {
    int rc = io_uring_register_files_update(_ring.get(), slot, &fd, 1);
    if (rc < 0) {
        return rc;
    }
    if (rc != 1) {
        return -EINVAL;
    }
    ::close(fd);
    return static_cast<int>(slot) | direct_bit;
}

void ring::close_direct(int handle) noexcept {
    int none = -1;
    io_uring_register_files_update(_ring.get(), static_cast<unsigned>(handle & ~direct_bit), &none, 1);
}

void ring::shutdown(int fd, int how) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_shutdown(sqe, fd, how);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, tag{op::none, 0, 0}.encode());
}

io_uring_sqe* ring::next_sqe() noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(_ring.get());
    if (!sqe) {
        // Full: hand what we have to the kernel and take a fresh one.
        io_uring_submit(_ring.get());
        sqe = io_uring_get_sqe(_ring.get());
    }
    return sqe;
}

void ring::accept_multishot(int fd, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::recv(int fd, void* buf, uint32_t len, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_recv(sqe, fd, buf, len, 0);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::recv_provided(int fd, uint16_t group, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_recv(sqe, fd, nullptr, 0, 0);
    use_fd(sqe, fd);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::recv_multishot(int fd, uint16_t group, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    use_fd(sqe, fd);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::send(int fd, const void* buf, uint32_t len, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::sendmsg(int fd, const msghdr* msg, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::recvmsg(int fd, msghdr* msg, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_recvmsg(sqe, fd, msg, 0);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::connect(int fd, const sockaddr* addr, uint32_t len, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_connect(sqe, fd, addr, len);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::connect_with_timeout(int fd, const sockaddr* addr, uint32_t len, tag t, const timeout_spec* ts) noexcept {
    // Both SQEs must be adjacent in the same submission.
    if (io_uring_sq_space_left(_ring.get()) < 2) {
        io_uring_submit(_ring.get());
    }
    auto* sqe = next_sqe();
    io_uring_prep_connect(sqe, fd, addr, len);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, t.encode());
    sqe->flags |= IOSQE_IO_LINK;
    auto* to = next_sqe();
    io_uring_prep_link_timeout(to, reinterpret_cast<__kernel_timespec*>(const_cast<timeout_spec*>(ts)), 0);
    io_uring_sqe_set_data64(to, tag{op::none, 0, 0}.encode());
}

void ring::timeout(const timeout_spec* ts, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_timeout(sqe, reinterpret_cast<__kernel_timespec*>(const_cast<timeout_spec*>(ts)), 0, 0);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::cancel(tag target) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_cancel64(sqe, target.encode(), IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, tag{op::cancel, 0, 0}.encode());
}

void ring::cancel_fd(int fd) noexcept {
    auto* sqe = next_sqe();
    if (is_direct(fd)) {
        io_uring_prep_cancel_fd(sqe, fd & ~direct_bit, IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
    } else {
        io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    }
    io_uring_sqe_set_data64(sqe, tag{op::cancel, 0, 0}.encode());
}

void ring::close(int fd) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, tag{op::close, 0, 0}.encode());
}

void ring::splice(int fd_in, int fd_out, uint32_t len, tag t) noexcept {
    auto* sqe = next_sqe();
    unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
    if (is_direct(fd_in)) {
        fd_in &= ~direct_bit;
        flags |= SPLICE_F_FD_IN_FIXED;
    }
    io_uring_prep_splice(sqe, fd_in, -1, fd_out, -1, len, flags);
    use_fd(sqe, fd_out);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::poll(int fd, uint32_t events, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_poll_add(sqe, fd, events);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::read_eventfd(int fd, uint64_t* buf, tag t) noexcept {
    auto* sqe = next_sqe();
    io_uring_prep_read(sqe, fd, buf, sizeof *buf, 0);
    use_fd(sqe, fd);
    io_uring_sqe_set_data64(sqe, t.encode());
}

void ring::submit() noexcept {
    io_uring_submit(_ring.get());
}

void ring::submit_and_wait(int timeout_ms) noexcept {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_cq_ready(_ring.get()) > 0) {
        io_uring_submit(_ring.get());
        return;
    }
    bool poll = _poll_next && _busy_poll_ns > 0 && (_poll_score >= 8 || (++_poll_probe & 7) == 0);
    _poll_next = false;
    if (poll) {
        auto now_ns = [] {
            timespec t{};
            clock_gettime(CLOCK_MONOTONIC, &t);
            return uint64_t(t.tv_sec) * 1'000'000'000u + uint64_t(t.tv_nsec);
        };
        io_uring_submit(_ring.get());
        const uint64_t until = now_ns() + _busy_poll_ns;
        do {
            // Runs the ring's deferred work, which posts what has completed.
            io_uring_get_events(_ring.get());
            if (io_uring_cq_ready(_ring.get()) > 0) {
                ++_poll_hits;
                // A find late in the window cost more CPU than sleeping and
                // being woken would have: it counts against polling.
                score_poll(now_ns() + _busy_poll_ns / 2 < until);
                return;
            }
        } while (now_ns() < until);
        ++_poll_misses;
        score_poll(false);
    }
    __kernel_timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000LL};
    io_uring_submit_and_wait_timeout(_ring.get(), &cqe, 1, &ts, nullptr);
}

unsigned ring::cq_ready() const noexcept {
    return io_uring_cq_ready(_ring.get());
}

bool ring::peek(completion& c) noexcept {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(_ring.get(), &cqe) != 0 || !cqe) {
        return false;
    }
    c.t = tag::decode(cqe->user_data);
    c.res = cqe->res;
    c.flags = cqe->flags;
    io_uring_cqe_seen(_ring.get(), cqe);
    return true;
}

bool ring::add_buffer_group(uint16_t group, uint32_t count, uint32_t size, std::string& err) noexcept {
    if (group >= 4 || count == 0 || (count & (count - 1)) != 0 || count > 32768) {
        err = "buffer group: bad parameters";
        return false;
    }
    auto& g = _groups[group];
    size_t ring_bytes = count * sizeof(io_uring_buf);
    size_t total = ring_bytes + size_t(count) * size;
    void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        err = fmt::format("cannot map {} bytes of receive buffers: {}", total, std::strerror(errno));
        return false;
    }
    g.br = static_cast<io_uring_buf_ring*>(mem);
    g.base = static_cast<std::byte*>(mem) + ring_bytes;
    g.count = count;
    g.size = size;
    g.map_len = total;
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(mem);
    reg.ring_entries = count;
    reg.bgid = group;
    if (int rc = io_uring_register_buf_ring(_ring.get(), &reg, 0); rc != 0) {
        err = fmt::format("cannot register a provided buffer ring: {}", std::strerror(-rc));
        munmap(mem, total);
        g = {};
        return false;
    }
    io_uring_buf_ring_init(g.br);
    int mask = io_uring_buf_ring_mask(count);
    for (uint32_t i = 0; i < count; ++i) {
        io_uring_buf_ring_add(g.br, g.base + size_t(i) * size, size, static_cast<unsigned short>(i), mask,
                              static_cast<int>(i));
    }
    io_uring_buf_ring_advance(g.br, static_cast<int>(count));
    return true;
}

std::byte* ring::buffer(uint16_t group, uint16_t id) const noexcept {
    const auto& g = _groups[group & 3];
    return g.base + size_t(id) * g.size;
}

void ring::recycle(uint16_t group, uint16_t id) noexcept {
    auto& g = _groups[group & 3];
    io_uring_buf_ring_add(g.br, g.base + size_t(id) * g.size, g.size, id, io_uring_buf_ring_mask(g.count), 0);
    io_uring_buf_ring_advance(g.br, 1);
}

} // namespace zt::net
