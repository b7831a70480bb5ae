// The table channel, control side: listens on a unix socket (0600), puts each
// new table into a sealed memfd and passes it (SCM_RIGHTS) to every connected
// data plane, at once to late subscribers too, and keeps what each adopted
// and the counters page each shared.
// No threads: the owner's poll loop drives it.
#pragma once

#include "common/metrics/page.hh"

#include <poll.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace zt::control {

/// One connected data plane, for `ztdns status`.
struct table_subscriber {
    uint64_t id = 0; ///< connection number, from 1
    pid_t pid = 0;   ///< SO_PEERCRED
    uid_t uid = 0;
    uint64_t sent = 0;     ///< generation last sent
    uint64_t adopted = 0;  ///< generation last acknowledged as adopted (0: none)
    uint64_t rejected = 0; ///< generation last rejected (0: none)
    std::string error;     ///< the reason of the last rejection
    bool counters = false; ///< it shared its counters page; then, summed over its shards:
    uint64_t connections_active = 0;
    uint64_t queries = 0;
    uint64_t tunnels_open = 0;
};

/// Not thread-safe: one control thread owns it.
class publisher {
public:
    explicit publisher(size_t max_subscribers = 64);
    ~publisher(); ///< closes everything and removes the socket file
    publisher(const publisher&) = delete;
    publisher& operator=(const publisher&) = delete;

    /// Listens on `path` (created atomically with mode 0600, replacing a stale
    /// socket). Returns "" or the problem.
    std::string listen(const std::string& path);

    /// Checks `blob` with table::open() (a table that does not validate is
    /// never sent), copies it into a new memfd, seals it (write, grow, shrink,
    /// seal) and sends it to every subscriber; it stays current for those that
    /// connect later. At most one table is in flight per subscriber: one that
    /// has not acknowledged the previous table gets the newest when it does
    /// (rapid reloads coalesce). Returns "" or the problem (the previous table
    /// stays current).
    std::string publish(std::span<const std::byte> blob);

    /// What to poll: the listener and every subscriber.
    std::vector<pollfd> poll_fds() const;
    /// Handles one of poll_fds() after poll() (accepts, reads acks, resumes sends).
    void on_poll(const pollfd& p);
    /// One poll() of poll_fds() for at most `max_wait_ms`, then on_poll(). For tests.
    void run_once(int max_wait_ms);

    /// Generation of the current table (0: none yet).
    uint64_t generation() const noexcept { return _generation; }
    /// The connected subscribers and what they adopted.
    std::vector<table_subscriber> subscribers() const;
    const std::string& path() const noexcept { return _path; }
    /// The counters of every subscriber that shared its page, as Prometheus
    /// text (labels pid and shard); "" when none did.
    std::string metrics_text() const;

private:
    struct conn {
        int fd = -1;
        table_subscriber info;
        bool want_send = false; ///< the current table is not sent yet
        bool in_flight = false; ///< a table was sent and is not acknowledged yet
        metrics::view metrics;  ///< its counters page, once it sent one
    };

    void accept_all();
    void send_current(conn& c);
    void read_acks(conn& c);
    void drop(size_t i, const char* why);

    size_t _max_subscribers;
    std::string _path;
    int _listen_fd = -1;
    int _memfd = -1;
    uint64_t _generation = 0;
    uint64_t _size = 0;
    uint64_t _next_id = 1;
    std::vector<conn> _conns;
};

/// Writes the table file that lets the data plane start without control:
/// atomically (temp file, fsync, rename, fsync dir), mode 0644. Returns "" or
/// the problem. Control thread.
std::string save_table_file(const std::string& path, std::span<const std::byte> blob);

} // namespace zt::control
