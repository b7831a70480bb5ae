// Log line formatting: UTC timestamp, level, message, newline, one write(2).
#include "common/util/log.hh"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace zt::log {
namespace {

std::atomic<level> g_level{level::info};

constexpr std::string_view level_name(level l) noexcept {
    switch (l) {
    case level::debug:
        return "DEBUG";
    case level::info:
        return "INFO";
    case level::warn:
        return "WARN";
    case level::error:
        return "ERROR";
    }
    return "?";
}

} // namespace

void set_level(level l) noexcept { g_level.store(l, std::memory_order_relaxed); }
level current_level() noexcept { return g_level.load(std::memory_order_relaxed); }

void write(level l, std::string_view msg) noexcept {
    std::array<char, 4096> buf;
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm t{};
    gmtime_r(&ts.tv_sec, &t);
    size_t n = strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ [", &t);
    auto put = [&](std::string_view s) {
        size_t k = std::min(s.size(), buf.size() - 1 - n);
        std::copy_n(s.data(), k, buf.data() + n);
        n += k;
    };
    put(level_name(l));
    put("] ");
    put(msg);
    buf[n++] = '\n';
    const char* p = buf.data();
    while (n > 0) {
        ssize_t w = ::write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        p += w;
        n -= size_t(w);
    }
}

size_t buffered::prefix(level l, char* out) noexcept {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec != _stamp_second) {
        tm t{};
        gmtime_r(&ts.tv_sec, &t);
        strftime(_stamp, sizeof _stamp, "%Y-%m-%dT%H:%M:%SZ", &t);
        _stamp_second = ts.tv_sec;
    }
    size_t n = strlen(_stamp);
    std::memcpy(out, _stamp, n);
    out[n++] = ' ';
    out[n++] = '[';
    auto name = level_name(l);
    std::memcpy(out + n, name.data(), name.size());
    n += name.size();
    out[n++] = ']';
    out[n++] = ' ';
    return n;
}

void buffered::flush() noexcept {
    const char* p = _buf;
    size_t n = _len;
    while (n > 0) {
        ssize_t w = ::write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break;
        }
        p += w;
        n -= size_t(w);
    }
    _len = 0;
}

} // namespace zt::log
