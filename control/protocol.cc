// Control socket framing (see protocol.hh).
#include "control/protocol.hh"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::control::protocol {
namespace {

bool write_all(int fd, const void* data, size_t n, std::string& err) {
    auto p = static_cast<const char*>(data);
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            err = (errno == EAGAIN) ? "timed out writing to the control socket"
                                    : fmt::format("control socket: {}", std::strerror(errno));
            return false;
        }
        p += w;
        n -= size_t(w);
    }
    return true;
}

bool read_all(int fd, void* data, size_t n, std::string& err) {
    auto p = static_cast<char*>(data);
    while (n > 0) {
        ssize_t r = ::recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            err = "the control socket closed early";
            return false;
        }
        if (r < 0) {
            err = (errno == EAGAIN) ? "timed out reading from the control socket"
                                    : fmt::format("control socket: {}", std::strerror(errno));
            return false;
        }
        p += r;
        n -= size_t(r);
    }
    return true;
}

bool write_frame(int fd, const std::string& body, std::string& err) {
    uint8_t len[4];
    auto n = static_cast<uint32_t>(body.size());
    for (int i = 0; i < 4; ++i) {
        len[i] = static_cast<uint8_t>(n >> (8 * i));
    }
    return write_all(fd, len, 4, err) && write_all(fd, body.data(), body.size(), err);
}

bool read_frame(int fd, std::string& body, uint32_t limit, std::string& err) {
    uint8_t len[4];
    if (!read_all(fd, len, 4, err)) {
        return false;
    }
    uint32_t n = uint32_t(len[0]) | uint32_t(len[1]) << 8 | uint32_t(len[2]) << 16 | uint32_t(len[3]) << 24;
    if (n > limit) {
        err = fmt::format("control message of {} bytes is over the limit of {}", n, limit);
        return false;
    }
    body.resize(n);
    return read_all(fd, body.data(), n, err);
}

} // namespace

void set_timeouts(int fd, int ms) noexcept {
    timeval tv{ms / 1000, (ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool write_request(int fd, const std::vector<std::string>& args, std::string& err) {
    std::string body;
    for (const auto& a : args) {
        body += a;
        body += '\0';
    }
    if (body.size() > max_request) {
        err = "command too long";
        return false;
    }
    return write_frame(fd, body, err);
}

bool read_request(int fd, std::vector<std::string>& args, std::string& err) {
    std::string body;
    if (!read_frame(fd, body, max_request, err)) {
        return false;
    }
    args.clear();
    size_t start = 0;
    for (size_t i = 0; i < body.size(); ++i) {
        if (body[i] == '\0') {
            args.push_back(body.substr(start, i - start));
            start = i + 1;
        }
    }
    if (start != body.size()) {
        err = "malformed request";
        return false;
    }
    return true;
}

bool write_reply(int fd, const reply& r, std::string& err) {
    std::string body(1, static_cast<char>(r.status & 0xff));
    body += r.text;
    return write_frame(fd, body, err);
}

bool read_reply(int fd, reply& r, std::string& err) {
    std::string body;
    if (!read_frame(fd, body, max_reply, err)) {
        return false;
    }
    if (body.empty()) {
        err = "empty reply";
        return false;
    }
    r.status = static_cast<uint8_t>(body[0]);
    r.text = body.substr(1);
    return true;
}

int connect_unix(const std::string& path, std::string& err) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) {
        err = fmt::format("socket path too long: {}", path);
        return -1;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = std::strerror(errno);
        return -1;
    }
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        err = fmt::format("cannot connect to {}: {}", path, std::strerror(errno));
        ::close(fd);
        return -1;
    }
    return fd;
}

int listen_unix(const std::string& path, mode_t mode, std::string& err) {
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path) {
        err = fmt::format("socket path too long: {}", path);
        return -1;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err = std::strerror(errno);
        return -1;
    }
    ::unlink(path.c_str()); // stale from a previous run; the data dir lock says we own it
    // Create the socket with no permissions for others from the first moment.
    mode_t old = ::umask(0777 & ~mode);
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::umask(old);
    if (rc != 0 || ::chmod(path.c_str(), mode) != 0 || ::listen(fd, 64) != 0) {
        err = fmt::format("cannot listen on {}: {}", path, std::strerror(errno));
        ::close(fd);
        return -1;
    }
    return fd;
}

} // namespace zt::control::protocol
