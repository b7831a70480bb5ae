// Compile, save, publish (see table_service.hh).
#include "control/table_service.hh"

#include "common/table/holder.hh"
#include "common/table/reader.hh"
#include "common/util/fs.hh"
#include "common/util/log.hh"
#include "control/table/compiler.hh"

#include <chrono>
#include <stdexcept>

#include <fmt/format.h>

namespace zt::control {

table_service::table_service(const layout& paths) : _paths(paths) {
    if (auto err = _publisher.listen(_paths.table_socket()); !err.empty()) {
        throw std::runtime_error(err);
    }
}

uint64_t table_service::next_generation() noexcept {
    auto now = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    _generation = std::max(_generation + 1, now);
    return _generation;
}

std::string table_service::publish(const config::config& c) {
    auto result = compile(c, next_generation());
    if (!result.ok()) {
        return result.error->str();
    }
    if (auto err = save_table_file(_paths.table_file(), result.blob); !err.empty()) {
        return err;
    }
    if (auto err = _publisher.publish(result.blob); !err.empty()) {
        return err;
    }
    _bytes = result.blob.size();
    log::info("Control: published table generation {} ({} bytes) to {} data plane(s)", _generation, _bytes,
              _publisher.subscribers().size());
    return {};
}

bool table_service::publish_last_file() {
    std::string bytes, err;
    if (!fs::read_file(_paths.table_file(), bytes, err)) {
        return false;
    }
    auto blob = table::blob::copy_of(std::as_bytes(std::span(bytes.data(), bytes.size())));
    auto opened = table::open(blob.bytes());
    if (!opened.ok()) {
        log::error("Control: {} does not validate: {}", _paths.table_file(), opened.reason);
        return false;
    }
    if (!_publisher.publish(blob.bytes()).empty()) {
        return false;
    }
    _generation = std::max(_generation, opened.view.generation());
    _bytes = bytes.size();
    return true;
}

std::vector<std::string> table_service::status_lines() const {
    std::vector<std::string> lines;
    lines.push_back(_generation ? fmt::format("table: generation {} ({} bytes), {}", _generation, _bytes,
                                              _paths.table_file())
                                : std::string("table: none published yet"));
    auto subs = _publisher.subscribers();
    lines.push_back(fmt::format("data planes: {}", subs.size()));
    for (const auto& s : subs) {
        lines.push_back(fmt::format("  pid {}: adopted generation {}{}{}", s.pid, s.adopted,
                                    s.rejected > s.adopted ? fmt::format(", REJECTED {}: {}", s.rejected, s.error)
                                                           : std::string(),
                                    s.counters ? fmt::format("; {} connections open, {} tunnels open, {} queries",
                                                             s.connections_active, s.tunnels_open, s.queries)
                                               : std::string()));
    }
    return lines;
}

} // namespace zt::control
