// Tunnel address allocation (see tunnel_net.hh).
#include "tools/endpoint/tunnel_net.hh"

#include <arpa/inet.h>

#include <fmt/format.h>

namespace zt::endpoint {

std::optional<ipv4_net> parse_tunnel_net(std::string_view text, std::string& err) {
    auto slash = text.find('/');
    if (slash == std::string_view::npos) {
        err = fmt::format("--tunnel-net {}: expected ADDRESS/PREFIX, e.g. 127.77.0.0/16", text);
        return std::nullopt;
    }
    std::string addr(text.substr(0, slash));
    std::string_view plen = text.substr(slash + 1);
    in_addr a{};
    unsigned prefix = 0;
    bool digits = !plen.empty() && plen.size() <= 2;
    for (char c : plen) {
        digits = digits && c >= '0' && c <= '9';
        prefix = prefix * 10 + unsigned(c - '0');
    }
    if (inet_pton(AF_INET, addr.c_str(), &a) != 1 || !digits || prefix < 8 || prefix > 30) {
        err = fmt::format("--tunnel-net {}: expected an IPv4 network with a prefix of 8 to 30 bits", text);
        return std::nullopt;
    }
    ipv4_net n{ntohl(a.s_addr), uint8_t(prefix)};
    if ((n.base >> 24) != 127) {
        err = fmt::format("--tunnel-net {}: must be inside 127.0.0.0/8 (loopback)", text);
        return std::nullopt;
    }
    if ((n.base & (n.size() - 1)) != 0) {
        err = fmt::format("--tunnel-net {}: host bits are set", text);
        return std::nullopt;
    }
    return n;
}

std::string ipv4_text(uint32_t addr) {
    return fmt::format("{}.{}.{}.{}", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff, addr & 0xff);
}

uint32_t address_allocator::preferred(std::string_view name) const noexcept {
    uint32_t h = 2166136261u;
    for (char c : name) {
        h = (h ^ uint8_t(c)) * 16777619u;
    }
    const uint32_t usable = _net.size() - 2;
    return _net.base + 1 + h % usable;
}

std::optional<uint32_t> address_allocator::find(const std::string& name) const {
    auto it = _by_name.find(name);
    if (it == _by_name.end()) {
        return std::nullopt;
    }
    return it->second;
}

std::optional<uint32_t> address_allocator::assign(const std::string& name) {
    if (auto a = find(name)) {
        return a;
    }
    const uint32_t usable = _net.size() - 2;
    if (_by_name.size() >= usable) {
        return std::nullopt;
    }
    uint32_t a = preferred(name);
    while (_by_addr.count(a)) {
        a = a + 1 >= _net.base + 1 + usable ? _net.base + 1 : a + 1;
    }
    _by_name.emplace(name, a);
    _by_addr.emplace(a, name);
    return a;
}

void address_allocator::release(const std::string& name) {
    auto it = _by_name.find(name);
    if (it != _by_name.end()) {
        _by_addr.erase(it->second);
        _by_name.erase(it);
    }
}

} // namespace zt::endpoint
