// The data plane's end of the table channel: connects to control's table
// socket (timeout, backoff), receives sealed memfds, maps them read-only,
// validates, hands them to the holder and acknowledges. Also loads the table
// file from the data dir so the data plane can start without control.
#pragma once

#include "common/table/channel.hh"
#include "common/table/holder.hh"

#include <chrono>
#include <cstdint>
#include <string>

namespace zt::table {

struct subscriber_options {
    std::string socket_path;            ///< control's table socket
    uint32_t connect_timeout_ms = 1000; ///< a connect still pending after this is abandoned
    uint32_t backoff_initial_ms = 100;  ///< first reconnect delay; doubles per failure
    uint32_t backoff_max_ms = 5000;
    uint32_t collect_interval_ms = 50; ///< how often to retry releasing tables shards still use
};

/// Not thread-safe: one instance, used only by the data plane's control
/// thread (never a shard): it does blocking-free socket I/O, mmap/munmap,
/// and the O(n) validation.
class subscriber {
public:
    subscriber(holder& h, subscriber_options o);
    ~subscriber();
    subscriber(const subscriber&) = delete;
    subscriber& operator=(const subscriber&) = delete;

    /// Reads the table file that control keeps in the data dir (a heap copy,
    /// not a mapping: the file is not sealed), validates it and publishes it
    /// unless the holder already has this or a newer generation. Returns "" or
    /// the problem (naming the path). Blocking file I/O: start-up only.
    std::string load_file(const std::string& path);

    /// Hands `fd` (the counters page, common/metrics; not taken, must outlive
    /// the subscriber) to control on every connection.
    void share_metrics(int fd) noexcept { _metrics_fd = fd; }

    /// The socket to poll; -1 while disconnected (poll ignores it).
    int fd() const noexcept { return _fd; }
    /// The poll events wanted on fd().
    short events() const noexcept;
    /// Milliseconds until on_timer() has work (reconnect, connect timeout,
    /// releasing old tables); -1: nothing scheduled.
    int timeout_ms() const noexcept;
    /// Handles poll's revents for fd().
    void on_ready(short revents);
    /// Runs what is due: reconnects, abandons slow connects, holder.collect().
    /// Cheap when nothing is due; call after every poll.
    void on_timer();
    /// One poll of fd() for at most `max_wait_ms` (also bounded by
    /// timeout_ms()), then on_ready()/on_timer(). For owners without a loop, and tests.
    void run_once(int max_wait_ms);

    bool connected() const noexcept { return _state == state::connected; }
    /// The generation of the table in the holder (0: none yet).
    uint64_t generation() const noexcept { return _generation; }
    /// The last problem (connect failure, rejected table), for logs and status.
    const std::string& last_error() const noexcept { return _last_error; }
    uint64_t adopted() const noexcept { return _adopted; }
    uint64_t rejected() const noexcept { return _rejected; }

private:
    using clock = std::chrono::steady_clock;
    enum class state { idle, connecting, connected };

    void start_connect();
    void connected_now();
    void disconnect(const std::string& why);
    void receive();
    /// Validates and adopts the table in `memfd`; returns "" or why it was refused.
    std::string adopt(int memfd, const channel::table_msg& m);
    /// Publishes a validated table unless it is not newer; returns "" or why not.
    std::string install(blob&& b, const table& view);
    void send_ack(uint64_t generation, const std::string& error);
    void flush_ack();
    void flush_metrics();

    holder& _holder;
    subscriber_options _o;
    int _fd = -1;
    state _state = state::idle;
    clock::time_point _next_attempt{};
    clock::time_point _connect_deadline{};
    clock::time_point _next_collect{};
    uint32_t _backoff_ms;
    bool _ack_pending = false;
    channel::ack_msg _ack{};
    int _metrics_fd = -1;
    bool _metrics_pending = false; ///< the page is not sent on this connection yet
    uint64_t _generation = 0;
    uint64_t _checksum = 0;
    uint64_t _adopted = 0;
    uint64_t _rejected = 0;
    uint32_t _failures = 0;
    std::string _last_error;
};

} // namespace zt::table
