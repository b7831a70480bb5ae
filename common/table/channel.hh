// The messages of the table channel between ztdns-control (publisher) and
// ztdns-dataplane (subscriber): a unix SOCK_SEQPACKET socket, one message per
// packet, the table itself travelling as a sealed memfd (SCM_RIGHTS), and the
// data plane's counters page the other way.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace zt::table::channel {

inline constexpr uint32_t magic = 0x5a544348; // "ZTCH"
inline constexpr uint16_t version = 1;

enum class msg_type : uint16_t { table = 1, ack = 2, metrics = 3 };

/// Publisher -> subscriber, with exactly one fd (SCM_RIGHTS): a memfd sealed
/// with required_seals, holding
/// `size` bytes of table.
struct table_msg {
    uint32_t magic = channel::magic;
    uint16_t version = channel::version;
    msg_type type = msg_type::table;
    uint64_t generation = 0;
    uint64_t size = 0;
};
static_assert(sizeof(table_msg) == 24);

enum class ack_status : uint32_t { adopted = 0, rejected = 1 };

/// Subscriber -> publisher, for every table_msg: adopted, or rejected with a
/// NUL-terminated reason.
struct ack_msg {
    uint32_t magic = channel::magic;
    uint16_t version = channel::version;
    msg_type type = msg_type::ack;
    uint64_t generation = 0;
    ack_status status = ack_status::adopted;
    uint32_t reserved = 0;
    char reason[112] = {};
};
static_assert(sizeof(ack_msg) == 136);

/// Subscriber -> publisher, once per connection, with exactly one fd
/// (SCM_RIGHTS): the data plane's counters page (common/metrics/page.hh),
/// sealed against resizing, which control maps read-only.
struct metrics_msg {
    uint32_t magic = channel::magic;
    uint16_t version = channel::version;
    msg_type type = msg_type::metrics;
    uint64_t reserved = 0;
};
static_assert(sizeof(metrics_msg) == 16);

/// The seals the publisher sets and a subscriber requires before it maps a
/// table: no write, no resize (so no SIGBUS), and no change of seals.
inline constexpr int required_seals = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;

/// Sends one message with one fd (SCM_RIGHTS), without blocking: sendmsg's
/// result (the message's size, or -1 with errno).
inline ssize_t send_with_fd(int sock, const void* message, size_t size, int fd) noexcept {
    iovec iov{const_cast<void*>(message), size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    return ::sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

} // namespace zt::table::channel
