// ztdns-control: owns the data dir, the CA and the route table. Runs in the
// foreground (systemd-friendly), serves the `ztdns` CLI on a unix socket,
// reloads on SIGHUP, and publishes every new table to the data planes.
#include "common/util/log.hh"
#include "control/controller.hh"
#include "control/protocol.hh"
#include "control/store/store.hh"
#include "control/table_service.hh"

#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr std::string_view usage = R"(usage: ztdns-control [--data-dir DIR] [--log-level debug|info|warn|error]

Owns the data dir (default $ZTDNS_DATA_DIR, else /var/lib/ztdns; create it with
`ztdns init`), serves the ztdns CLI on DIR/control.sock and publishes route
tables to ztdns-dataplane on DIR/table.sock. SIGHUP reloads; SIGTERM stops.
)";

/// Only root and our own user may run commands (the socket mode also says so;
/// members of the ztdns group get in through the socket's group).
bool peer_allowed(int fd) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return false;
    }
    if (cred.uid == 0 || cred.uid == ::getuid()) {
        return true;
    }
    if (group* g = ::getgrnam("ztdns")) {
        return cred.gid == g->gr_gid;
    }
    return false;
}

void serve_cli(zt::control::controller& ctl, int listen_fd) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    // Short deadlines: a stuck client must not hold control for long.
    zt::control::protocol::set_timeouts(fd, 5000);
    std::string err;
    std::vector<std::string> args;
    zt::control::reply r;
    if (!peer_allowed(fd)) {
        r = {1, "permission denied: only root, the control user or the ztdns group may use this socket"};
    } else if (!zt::control::protocol::read_request(fd, args, err)) {
        zt::log::warn("Control: bad request on the control socket: {}", err);
        ::close(fd);
        return;
    } else {
        try {
            r = ctl.run(args);
        } catch (const std::exception& e) {
            r = {1, e.what()};
        }
    }
    if (!zt::control::protocol::write_reply(fd, r, err)) {
        zt::log::warn("Control: cannot answer the CLI: {}", err);
    }
    ::close(fd);
}

} // namespace

int main(int argc, char** argv) {
    std::string dir = std::getenv("ZTDNS_DATA_DIR") ? std::getenv("ZTDNS_DATA_DIR") : "/var/lib/ztdns";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--data-dir" && i + 1 < argc) {
            dir = argv[++i];
        } else if (a.rfind("--data-dir=", 0) == 0) {
            dir = a.substr(11);
        } else if (a == "--log-level" && i + 1 < argc) {
            std::string l = argv[++i];
            zt::log::set_level(l == "debug"  ? zt::log::level::debug
                               : l == "warn" ? zt::log::level::warn
                               : l == "error" ? zt::log::level::error
                                              : zt::log::level::info);
        } else if (a == "-h" || a == "--help") {
            std::fputs(usage.data(), stdout);
            return 0;
        } else if (a == "--foreground") {
            // Always in the foreground; accepted for systemd unit files that say so.
        } else {
            std::fprintf(stderr, "ztdns-control: unknown argument %s\n%s", a.c_str(), usage.data());
            return 2;
        }
    }
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    int sig_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    try {
        zt::control::store st(dir);
        zt::control::table_service tables(st.paths());
        zt::control::controller ctl(st, tables);
        if (auto r = ctl.start(); r.status != 0) {
            zt::log::error("Control: config in {} not loaded: {}", dir, r.text);
            if (tables.publish_last_file()) {
                zt::log::warn("Control: serving the last good table from {}", st.paths().table_file());
            }
        }
        std::string err;
        gid_t gid = 0;
        mode_t mode = 0600;
        if (group* g = ::getgrnam("ztdns")) {
            gid = g->gr_gid;
            mode = 0660;
        }
        int cli_fd = zt::control::protocol::listen_unix(st.paths().control_socket(), mode, err);
        if (cli_fd < 0) {
            throw std::runtime_error(err);
        }
        if (mode == 0660 && ::chown(st.paths().control_socket().c_str(), ::getuid(), gid) != 0) {
            zt::log::warn("Control: cannot give the ztdns group the control socket: {}", std::strerror(errno));
        }
        zt::log::info("Control: ready, data dir {}, CLI socket {}, table socket {}", dir, st.paths().control_socket(),
                      st.paths().table_socket());
        for (;;) {
            std::vector<pollfd> fds{{sig_fd, POLLIN, 0}, {cli_fd, POLLIN, 0}};
            auto table_fds = tables.poll_fds();
            fds.insert(fds.end(), table_fds.begin(), table_fds.end());
            int n = ::poll(fds.data(), fds.size(), 1000);
            if (n < 0 && errno != EINTR) {
                throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
            }
            if (fds[0].revents & POLLIN) {
                signalfd_siginfo si{};
                while (::read(sig_fd, &si, sizeof si) == sizeof si) {
                    if (si.ssi_signo == SIGHUP) {
                        auto r = ctl.reload();
                        if (r.status != 0) {
                            zt::log::error("Control: reload refused: {}", r.text);
                        }
                    } else {
                        zt::log::info("Control: stopping (signal {})", si.ssi_signo);
                        ::close(cli_fd);
                        ::unlink(st.paths().control_socket().c_str());
                        return 0;
                    }
                }
            }
            if (fds[1].revents & POLLIN) {
                serve_cli(ctl, cli_fd);
            }
            for (size_t i = 2; i < fds.size(); ++i) {
                if (fds[i].revents) {
                    tables.on_poll(fds[i]);
                }
            }
        }
    } catch (const std::exception& e) {
        zt::log::error("Control: {}", e.what());
        return 1;
    }
}
