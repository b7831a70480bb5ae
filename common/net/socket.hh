// Socket helpers used at start-up (not per event): address parsing,
// SO_REUSEPORT listeners, the port a listener got, and socket options.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace zt::net {

struct address {
    sockaddr_storage storage{};
    socklen_t length = 0;
    const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
    int family() const noexcept { return storage.ss_family; }
    uint16_t port() const noexcept;
    std::string str() const;
};

/// Parses "1.2.3.4:853" or "[::1]:853".
bool parse_address(std::string_view text, address& out) noexcept;
/// An address from 4 or 16 raw bytes and a port.
address make_address(const uint8_t* bytes, int family, uint16_t port) noexcept;

/// A listening TCP socket with SO_REUSEPORT (one per shard), non-blocking,
/// TCP_NODELAY inherited by accepted sockets. -1 and `err` on failure.
int listen_tcp(const address& a, int backlog, std::string& err);
/// A UDP socket bound to `a` (port 0: any), non-blocking.
int bind_udp(const address& a, std::string& err);
/// A UDP socket connected to `a` (from a port the kernel picks; the kernel
/// drops datagrams from anyone else), non-blocking.
int connect_udp(const address& a, std::string& err);
/// The port a socket is bound to.
uint16_t bound_port(int fd) noexcept;
void set_nodelay(int fd) noexcept;

} // namespace zt::net
