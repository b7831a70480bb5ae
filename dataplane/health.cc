// Active TCP health checks (see health.hh).
#include "dataplane/health.hh"

#include "common/net/socket.hh"
#include "common/util/log.hh"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace zt::dataplane {

sockaddr_in6 backend_address(const table::format::backend& b) noexcept {
    auto a = net::make_address(b.addr, b.family == table::format::family_ipv4 ? AF_INET : AF_INET6, b.port);
    sockaddr_in6 out{};
    std::memcpy(&out, &a.storage, sizeof out);
    return out;
}

uint64_t address_key(const sockaddr_in6& a) noexcept {
    uint64_t h = 0xcbf29ce484222325ull;
    auto* p = reinterpret_cast<const uint8_t*>(&a);
    for (size_t i = 0; i < sizeof a; ++i) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h | 1; // 0 marks an empty entry
}

bool health_board::down(uint64_t key) const noexcept {
    for (size_t n = 0, i = key % capacity; n < capacity; ++n, i = (i + 1) % capacity) {
        uint64_t k = _entries[i].key.load(std::memory_order_acquire);
        if (k == key) {
            return _entries[i].down.load(std::memory_order_relaxed) != 0;
        }
        if (k == 0) {
            return false;
        }
    }
    return false;
}

bool health_board::set(uint64_t key, bool down) noexcept {
    for (size_t n = 0, i = key % capacity; n < capacity; ++n, i = (i + 1) % capacity) {
        uint64_t k = _entries[i].key.load(std::memory_order_relaxed);
        if (k == key || k == 0) {
            _entries[i].down.store(down ? 1 : 0, std::memory_order_relaxed);
            if (k == 0) {
                _entries[i].key.store(key, std::memory_order_release);
            }
            return true;
        }
    }
    return false;
}

health_prober::health_prober(health_board& board, table::holder::reader&& reader, health_options o)
    : _board(board), _reader(std::move(reader)), _o(o) {}

void health_prober::run(const std::atomic<bool>& stop) {
    using clock = std::chrono::steady_clock;
    while (!stop.load(std::memory_order_relaxed)) {
        auto next = clock::now() + std::chrono::milliseconds(_o.interval_ms);
        round();
        while (!stop.load(std::memory_order_relaxed) && clock::now() < next) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }
}

void health_prober::round() {
    _reader.refresh();
    const table::table& t = _reader.current();
    ++_round;
    struct check {
        uint64_t key;
        sockaddr_in6 addr;
        std::string what; ///< "service NAME backend HOST:PORT"
        uint32_t timeout_ms;
        int fd = -1;
        std::string error; ///< "" while pending or when it connected
        bool done = false;
    };
    std::vector<check> checks;
    for (uint32_t s = 0; s < t.service_count(); ++s) {
        auto sv = t.service(s);
        if (!(sv.flags & table::format::service_health_check)) {
            continue;
        }
        uint32_t timeout = std::min(sv.connect_timeout_ms ? sv.connect_timeout_ms : _o.timeout_ms, _o.interval_ms);
        for (const auto& b : sv.backends) {
            sockaddr_in6 a = backend_address(b);
            uint64_t key = address_key(a);
            if (std::any_of(checks.begin(), checks.end(), [&](const check& c) { return c.key == key; })) {
                continue;
            }
            checks.push_back({key, a, fmt::format("service {} backend {}:{}", sv.name, t.string(b.host), b.port),
                              timeout});
        }
    }

    // Every connect at once, then one poll loop until each is settled.
    auto now_ms = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    };
    const int64_t started = now_ms();
    for (auto& c : checks) {
        c.fd = ::socket(c.addr.sin6_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
            c.error = fmt::format("no socket: {}", std::strerror(errno));
            c.done = true;
            continue;
        }
        socklen_t len = c.addr.sin6_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&c.addr), len) == 0) {
            c.done = true;
        } else if (errno != EINPROGRESS) {
            c.error = std::strerror(errno);
            c.done = true;
        }
    }
    for (;;) {
        std::vector<pollfd> fds;
        std::vector<size_t> which;
        int wait = -1;
        int64_t now = now_ms();
        for (size_t i = 0; i < checks.size(); ++i) {
            auto& c = checks[i];
            if (c.done) {
                continue;
            }
            int64_t left = started + c.timeout_ms - now;
            if (left <= 0) {
                c.error = fmt::format("no answer within {} ms", c.timeout_ms);
                c.done = true;
                continue;
            }
            wait = wait < 0 ? int(left) : std::min(wait, int(left));
            fds.push_back({c.fd, POLLOUT, 0});
            which.push_back(i);
        }
        if (fds.empty()) {
            break;
        }
        if (::poll(fds.data(), fds.size(), wait) < 0 && errno != EINTR) {
            break;
        }
        for (size_t k = 0; k < fds.size(); ++k) {
            if (!fds[k].revents) {
                continue;
            }
            auto& c = checks[which[k]];
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            c.error = err ? std::strerror(err) : "";
            c.done = true;
        }
    }

    for (auto& c : checks) {
        if (c.fd >= 0) {
            ::close(c.fd);
        }
        if (!c.done) {
            c.error = "poll failed";
        }
        state& st = _states[c.key];
        st.seen = _round;
        if (c.error.empty()) {
            st.fails = 0;
            ++st.oks;
            if (st.down && st.oks >= _o.rise) {
                st.down = false;
                log::info("Proxy: health check: {} is up again", c.what);
            }
        } else {
            st.oks = 0;
            ++st.fails;
            if (!st.down && st.fails >= _o.fall) {
                st.down = true;
                log::warn("Proxy: health check: {} is down ({})", c.what, c.error);
            }
        }
        if (!_board.set(c.key, st.down) && st.down) {
            log::warn("Proxy: health check: more than {} backends under checks; {} is not marked down",
                      health_board::capacity, c.what);
        }
    }
    // Backends no longer checked (their route changed or went) count as up.
    for (auto it = _states.begin(); it != _states.end();) {
        if (it->second.seen != _round) {
            _board.set(it->first, false);
            it = _states.erase(it);
        } else {
            ++it;
        }
    }
}

} // namespace zt::dataplane
