// The local addresses of transparent tunnels: one stable loopback address per private name, from a network such as
// 127.77.0.0/16. The address is a hash of the name (FNV-1a), so it stays the same across restarts; a collision takes
// the next free address. Pure; the endpoint's single thread owns the allocator.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace zt::endpoint {

/// An IPv4 network, host byte order.
struct ipv4_net {
    uint32_t base = 0;
    uint8_t prefix = 0;
    uint32_t size() const noexcept { return prefix == 0 ? 0 : uint32_t(1) << (32 - prefix); }
};

/// Parses "127.77.0.0/16". The network must lie inside 127.0.0.0/8 (only loopback addresses can be used without
/// configuring an interface) and hold at least 4 addresses; host bits must be zero. nullopt and `err` otherwise.
std::optional<ipv4_net> parse_tunnel_net(std::string_view text, std::string& err);

/// "127.77.1.2" from a host-order address.
std::string ipv4_text(uint32_t addr);

/// Assigns addresses to names. The first and last address of the network are never used.
class address_allocator {
public:
    explicit address_allocator(ipv4_net net) : _net(net) {}
    /// The name's address, assigning one when it has none; nullopt when the network is full.
    std::optional<uint32_t> assign(const std::string& name);
    /// The name's address if it has one.
    std::optional<uint32_t> find(const std::string& name) const;
    void release(const std::string& name);
    size_t count() const noexcept { return _by_name.size(); }

    /// Where hashing puts `name` before collisions: exposed for the tests.
    uint32_t preferred(std::string_view name) const noexcept;

private:
    ipv4_net _net;
    std::unordered_map<std::string, uint32_t> _by_name;
    std::unordered_map<uint32_t, std::string> _by_addr;
};

} // namespace zt::endpoint
