// Data dir lock, load and ordered atomic saves (see store.hh).
#include "control/store/store.hh"

#include "common/config/write.hh"
#include "common/util/fs.hh"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace zt::control {

store::store(std::string dir) : _paths{std::move(dir)} {
    _lock_fd = ::open(_paths.lock_file().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (_lock_fd < 0) {
        throw std::runtime_error(fmt::format("cannot use data dir {}: {}", _paths.dir, std::strerror(errno)));
    }
    if (::flock(_lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        ::close(_lock_fd);
        _lock_fd = -1;
        if (e == EWOULDBLOCK) {
            throw std::runtime_error(
                fmt::format("data dir {} is in use by another ztdns-control (lock {})", _paths.dir, _paths.lock_file()));
        }
        throw std::runtime_error(fmt::format("cannot lock {}: {}", _paths.lock_file(), std::strerror(e)));
    }
}

store::~store() {
    if (_lock_fd >= 0) {
        ::close(_lock_fd);
    }
}

config::parsed<config::config> store::load() const { return config::load_dir(_paths.dir); }

std::string store::save(const config::config& prev, const config::config& next) const {
    auto zones = config::zones_json(next.zones);
    auto routes = config::routes_json(next.routes);
    auto endpoints = config::endpoints_json(next.endpoints);
    bool zones_changed = zones != config::zones_json(prev.zones);
    bool routes_changed = routes != config::routes_json(prev.routes);
    bool endpoints_changed = endpoints != config::endpoints_json(prev.endpoints);

    bool narrowing = false; // an endpoint revoked or removed
    for (const auto& old_ep : prev.endpoints) {
        bool still = false;
        for (const auto& ep : next.endpoints) {
            if (ep.cn == old_ep.cn) {
                still = !ep.revoked || old_ep.revoked;
            }
        }
        narrowing |= !still;
    }
    struct step {
        bool changed;
        std::string_view name;
        const std::string* text;
    };
    step order_widen[] = {{endpoints_changed, config::endpoints_file, &endpoints},
                          {routes_changed, config::routes_file, &routes},
                          {zones_changed, config::zones_file, &zones}};
    step order_narrow[] = {{zones_changed, config::zones_file, &zones},
                           {endpoints_changed, config::endpoints_file, &endpoints},
                           {routes_changed, config::routes_file, &routes}};
    for (const auto& s : narrowing ? order_narrow : order_widen) {
        if (!s.changed) {
            continue;
        }
        if (auto err = fs::write_atomic(_paths.file(s.name), std::string_view(*s.text), 0644); !err.empty()) {
            return err;
        }
    }
    return {};
}

} // namespace zt::control
