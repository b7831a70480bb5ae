// Test helper of the sniffer tests: runs a real client (curl, openssl s_client) against a listener on 127.0.0.1 and
// returns the first bytes it sends, so the sniffers are checked against what real peers put on the wire. Bounded:
// the client runs under `timeout 10`, accepting waits 10 s at most, reading stops after 3 s of silence.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace zt::proto::test {

/// Allocations counted by the test binary's operator new (defined in http_host_test.cc).
size_t allocation_count() noexcept;

using stop_fn = bool (*)(std::span<const std::byte>);

/// Runs `command` through sh with every "PORT" replaced by the port of a fresh listener, accepts one connection and
/// reads until the client closes, `done(bytes)` is true, or 3 s pass without data; then closes the connection and
/// stops the client. Empty when the client never connected.
inline std::vector<uint8_t> capture_client_bytes(std::string command, stop_fn done) {
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (lfd < 0 || ::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, 4) != 0 ||
        ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return {};
    }
    const std::string port = std::to_string(ntohs(addr.sin_port));
    for (size_t at = command.find("PORT"); at != std::string::npos; at = command.find("PORT", at)) {
        command.replace(at, 4, port);
    }
    const std::string shell = "exec timeout 10 " + command;
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execl("/bin/sh", "sh", "-c", shell.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    std::vector<uint8_t> got;
    pollfd pl{lfd, POLLIN, 0};
    if (pid > 0 && ::poll(&pl, 1, 10000) == 1) {
        const int cfd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        uint8_t buf[4096];
        while (cfd >= 0) {
            pollfd pc{cfd, POLLIN, 0};
            if (::poll(&pc, 1, 3000) != 1) {
                break;
            }
            const ssize_t n = ::recv(cfd, buf, sizeof buf, 0);
            if (n <= 0) {
                break;
            }
            got.insert(got.end(), buf, buf + n);
            if (done(std::as_bytes(std::span(got)))) {
                break;
            }
        }
        if (cfd >= 0) {
            ::close(cfd);
        }
    }
    ::close(lfd);
    if (pid > 0) {
        ::kill(pid, SIGTERM);
        int status = 0;
        ::waitpid(pid, &status, 0);
    }
    return got;
}

} // namespace zt::proto::test
