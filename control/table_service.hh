// ztdns-control's table_sink: compiles each accepted config into a route
// table, writes it atomically to the data dir (so a data plane can start
// without control) and publishes it to every connected data plane.
#pragma once

#include "control/controller.hh"
#include "control/table/publisher.hh"

#include <poll.h>

#include <string>
#include <vector>

namespace zt::control {

class table_service : public table_sink {
public:
    /// Listens on the data dir's table socket; throws if it cannot.
    explicit table_service(const layout& paths);

    std::string publish(const config::config& c) override;
    std::vector<std::string> status_lines() const override;
    std::string metrics_text() const override { return _publisher.metrics_text(); }

    /// Publishes the table file as it is on disk (when the config cannot be
    /// loaded at start). False when there is none or it does not validate.
    bool publish_last_file();

    std::vector<pollfd> poll_fds() const { return _publisher.poll_fds(); }
    void on_poll(const pollfd& p) { _publisher.on_poll(p); }

private:
    /// Generations only grow, across restarts too: the larger of the last
    /// one plus one and the wall clock in milliseconds.
    uint64_t next_generation() noexcept;

    layout _paths;
    publisher _publisher;
    uint64_t _generation = 0;
    size_t _bytes = 0;
};

} // namespace zt::control
