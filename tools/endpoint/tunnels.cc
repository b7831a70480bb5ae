// Transparent tunnels (see tunnels.hh).
#include "tools/endpoint/tunnels.hh"

#include "common/util/log.hh"
#include "tools/endpoint/names.hh"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::endpoint {
namespace {

/// Names under a zone that may get an address on demand, in all.
constexpr size_t max_names = 1024;

int listen_on(uint32_t addr, uint16_t port, std::string& err) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = std::strerror(errno);
        return -1;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    set_nodelay(fd); // inherited by accepted sockets
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 128) != 0) {
        err = std::strerror(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

} // namespace

tunnels::tunnels(loop& l, const tls::context& ctx, const bundle& b, address_choice& proxies, ipv4_net net)
    : _loop(l), _ctx(ctx), _bundle(b), _proxies(proxies), _alloc(net) {}

tunnels::~tunnels() {
    for (auto& b : _bridges) {
        b->cut("the endpoint stops");
    }
}

void tunnels::open_listeners(const std::string& name, entry& e) {
    for (uint16_t port : e.ports) {
        std::string err;
        int fd = listen_on(e.addr, port, err);
        if (fd < 0) {
            log::warn("Endpoint: cannot listen on {}:{} for {}: {}", ipv4_text(e.addr), port, name, err);
            continue;
        }
        auto l = std::make_unique<listener>();
        l->t = this;
        l->name = name;
        l->addr = e.addr;
        l->port = port;
        l->w.attach(_loop, fd, l.get());
        l->w.set(EPOLLIN);
        e.listeners.push_back(std::move(l));
        log::info("Endpoint: tunnel {} → {}:{}", name, ipv4_text(e.addr), port);
    }
}

void tunnels::close_name(const std::string& name) {
    auto it = _names.find(name);
    if (it == _names.end()) {
        return;
    }
    for (auto& l : it->second.listeners) {
        l->w.reset();
        _closed.push_back(std::move(l));
    }
    _names.erase(it);
    _alloc.release(name);
    log::info("Endpoint: tunnel {} removed", name);
}

void tunnels::update(const std::map<std::string, std::vector<uint16_t>>& zones) {
    // Gone, or served on other ports: close (the name and everything under the zone).
    std::vector<std::string> drop;
    for (const auto& [name, e] : _names) {
        auto z = zones.find(e.zone);
        if (z == zones.end() || z->second != e.ports) {
            drop.push_back(name);
        }
    }
    for (const auto& n : drop) {
        close_name(n);
    }
    _zones = zones;
    for (const auto& [zone, ports] : zones) {
        if (ports.empty() || _names.count(zone)) {
            continue;
        }
        auto addr = _alloc.assign(zone);
        if (!addr) {
            log::warn("Endpoint: no free tunnel address for {}", zone);
            continue;
        }
        entry& e = _names[zone];
        e.zone = zone;
        e.ports = ports;
        e.addr = *addr;
        open_listeners(zone, e);
    }
}

std::optional<uint32_t> tunnels::address_for(const std::string& name) {
    if (auto it = _names.find(name); it != _names.end()) {
        return it->second.addr;
    }
    // The longest zone that holds the name.
    const std::string* zone = nullptr;
    for (const auto& [z, ports] : _zones) {
        if (!ports.empty() && under_zone(name, z) && (!zone || z.size() > zone->size())) {
            zone = &z;
        }
    }
    if (!zone || _names.size() >= max_names) {
        return std::nullopt;
    }
    auto addr = _alloc.assign(name);
    if (!addr) {
        return std::nullopt;
    }
    entry& e = _names[name];
    e.zone = *zone;
    e.ports = _zones[*zone];
    e.addr = *addr;
    open_listeners(name, e);
    return e.addr;
}

void tunnels::on_accept(listener& l) {
    for (int i = 0; i < 64; ++i) {
        int fd = ::accept4(l.w.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                log::warn("Endpoint: accept on {}:{}: {}", ipv4_text(l.addr), l.port, std::strerror(errno));
            }
            return;
        }
        if (_proxies.size() == 0) {
            ::close(fd);
            log::warn("Endpoint: the bundle lists no proxy: cannot carry a tunnel to {}", l.name);
            continue;
        }
        log::debug("Endpoint: tunnel {}:{} (SNI {})", l.name, l.port, l.name);
        _bridges.push_back(bridge::client(_loop, fd, l.name, _proxies, {&_ctx, l.name, _bundle.server_name, {}}));
    }
}

ms_t tunnels::tick(ms_t now) {
    _closed.clear();
    ms_t next = now + 1000;
    for (auto& b : _bridges) {
        next = std::min(next, b->tick(now));
    }
    std::erase_if(_bridges, [](const auto& b) { return b->done(); });
    return next;
}

} // namespace zt::endpoint
