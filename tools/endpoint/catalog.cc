// The private zones from the DoT server (see catalog.hh).
#include "tools/endpoint/catalog.hh"

#include "common/util/log.hh"
#include "tools/endpoint/names.hh"

#include <sys/random.h>

#include <array>

#include <fmt/format.h>

namespace zt::endpoint {
namespace {

constexpr ms_t retry_ms = 3000;

} // namespace

catalog::catalog(loop& l, dot_pool& dot, std::string server_name, bool want_ports, uint32_t interval_s,
                 uint32_t timeout_ms, on_change cb)
    : _loop(l), _dot(dot), _server_name(std::move(server_name)), _name(catalog_name(_server_name)),
      _want_ports(want_ports), _interval_ms(interval_s * 1000), _timeout_ms(timeout_ms), _cb(std::move(cb)) {
    if (getrandom(&_id, sizeof _id, 0) != sizeof _id) {
        _id = uint16_t(monotonic_ms());
    }
}

void catalog::refresh() {
    if (_busy) {
        _again = true;
        return;
    }
    _busy = true;
    _next = _loop.now() + _interval_ms;
    std::array<std::byte, 512> q;
    size_t n = build_query(q, ++_id, _name, type_ptr);
    if (n == 0) {
        log::error("Endpoint: the server name {} does not make a valid catalog name", _server_name);
        _busy = false;
        return;
    }
    _dot.submit(std::span(q).first(n), _loop.now() + _timeout_ms,
                [this](std::span<const std::byte> a) { on_catalog(a); });
}

void catalog::on_catalog(std::span<const std::byte> answer) {
    auto c = answer.empty() ? catalog_answer{} : parse_catalog(answer, _name);
    if (c.result == catalog_answer::kind::failed) {
        log::debug("Endpoint: the catalog could not be fetched; keeping {} zone(s)", _zones.size());
        _busy = false;
        _next = _loop.now() + retry_ms;
        return;
    }
    if (c.truncated) {
        log::warn("Endpoint: the catalog was cut at {} zones (64 KiB)", c.zones.size());
    }
    _building.clear();
    for (auto& z : c.zones) {
        _building[z] = {};
    }
    if (!_want_ports || c.zones.empty()) {
        done_ports();
        return;
    }
    ask_ports(std::move(c.zones));
}

void catalog::ask_ports(std::vector<std::string> zones) {
    _srv_left = unsigned(zones.size());
    for (const auto& z : zones) {
        std::array<std::byte, 512> q;
        std::string name = srv_name(z);
        size_t n = build_query(q, ++_id, name, type_srv);
        if (n == 0) {
            if (--_srv_left == 0) {
                done_ports();
            }
            continue;
        }
        _dot.submit(std::span(q).first(n), _loop.now() + _timeout_ms, [this, z, name](std::span<const std::byte> a) {
            auto ports = a.empty() ? std::vector<uint16_t>{} : parse_srv_ports(a, name);
            if (a.empty()) {
                // A failed lookup keeps the ports we had: a glitch must not tear tunnels down.
                if (auto old = _zones.find(z); old != _zones.end()) {
                    ports = old->second;
                }
            }
            _building[z] = std::move(ports);
            if (--_srv_left == 0) {
                done_ports();
            }
        });
    }
}

void catalog::done_ports() {
    _busy = false;
    _known = true;
    if (_building != _zones) {
        std::string list;
        for (const auto& [z, ports] : _building) {
            list += fmt::format("{}{}", list.empty() ? "" : ", ", z);
            for (uint16_t p : ports) {
                list += fmt::format(":{}", p);
            }
        }
        log::info("Endpoint: {} private zone(s){}{}", _building.size(), list.empty() ? "" : ": ", list);
        _zones = _building;
        _cb(_zones);
    }
    if (_again) {
        _again = false;
        refresh();
    }
}

ms_t catalog::tick(ms_t now) {
    if (!_busy && now >= _next) {
        refresh();
    }
    return _busy ? now + 1000 : _next;
}

} // namespace zt::endpoint
