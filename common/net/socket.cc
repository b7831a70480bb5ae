// Start-up socket helpers (see socket.hh).
#include "common/net/socket.hh"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::net {

uint16_t address::port() const noexcept {
    if (storage.ss_family == AF_INET) {
        return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    }
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
}

std::string address::str() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (storage.ss_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr, buf, sizeof buf);
        return fmt::format("{}:{}", buf, port());
    }
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr, buf, sizeof buf);
    return fmt::format("[{}]:{}", buf, port());
}

bool parse_address(std::string_view text, address& out) noexcept {
    std::string host;
    std::string_view port;
    bool v6 = !text.empty() && text.front() == '[';
    if (v6) {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 2 > text.size() || text[close + 1] != ':') {
            return false;
        }
        host.assign(text.substr(1, close - 1));
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            return false;
        }
        host.assign(text.substr(0, colon));
        port = text.substr(colon + 1);
    }
    unsigned p = 0;
    if (port.empty() || port.size() > 5) {
        return false;
    }
    for (char c : port) {
        if (c < '0' || c > '9') {
            return false;
        }
        p = p * 10 + unsigned(c - '0');
    }
    if (p > 65535) {
        return false;
    }
    out = {};
    if (v6) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(static_cast<uint16_t>(p));
        if (inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr) != 1) {
            return false;
        }
        out.length = sizeof(sockaddr_in6);
    } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&out.storage);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(static_cast<uint16_t>(p));
        if (inet_pton(AF_INET, host.c_str(), &s4->sin_addr) != 1) {
            return false;
        }
        out.length = sizeof(sockaddr_in);
    }
    return true;
}

address make_address(const uint8_t* bytes, int family, uint16_t port) noexcept {
    address a;
    if (family == AF_INET) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&a.storage);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        std::memcpy(&s4->sin_addr, bytes, 4);
        a.length = sizeof(sockaddr_in);
    } else {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        std::memcpy(&s6->sin6_addr, bytes, 16);
        a.length = sizeof(sockaddr_in6);
    }
    return a;
}

int listen_tcp(const address& a, int backlog, std::string& err) {
    int fd = ::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = fmt::format("socket: {}", std::strerror(errno));
        return -1;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (a.family() == AF_INET6) {
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (::bind(fd, a.sa(), a.length) != 0 || ::listen(fd, backlog) != 0) {
        err = fmt::format("cannot listen on {}: {}", a.str(), std::strerror(errno));
        ::close(fd);
        return -1;
    }
    return fd;
}

namespace {

/// A non-blocking UDP socket of `a`'s family, then `attach` (bind or connect)
/// to `a`; `what` names that step in the error.
int udp_socket(const address& a, int (*attach)(int, const sockaddr*, socklen_t), const char* what, std::string& err) {
    int fd = ::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = fmt::format("socket: {}", std::strerror(errno));
        return -1;
    }
    if (attach(fd, a.sa(), a.length) != 0) {
        err = fmt::format("cannot {} {}: {}", what, a.str(), std::strerror(errno));
        ::close(fd);
        return -1;
    }
    return fd;
}

} // namespace

int bind_udp(const address& a, std::string& err) { return udp_socket(a, ::bind, "bind", err); }

int connect_udp(const address& a, std::string& err) { return udp_socket(a, ::connect, "connect to", err); }

uint16_t bound_port(int fd) noexcept {
    address a;
    a.length = sizeof a.storage;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.length) != 0) {
        return 0;
    }
    return a.port();
}

void set_nodelay(int fd) noexcept {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

} // namespace zt::net
