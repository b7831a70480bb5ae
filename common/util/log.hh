// Log lines in the seed guide's format: "2024-12-05T10:30:45Z [INFO] DNS: ...".
// One write(2) per line to stderr, so lines from several threads never interleave.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

namespace zt::log {

enum class level { debug, info, warn, error };

/// Sets the lowest level that is printed (default info). Call before starting threads.
void set_level(level l) noexcept;
level current_level() noexcept;

/// Writes one complete line. Any thread.
void write(level l, std::string_view msg) noexcept;

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
    if (current_level() <= level::info) {
        write(level::info, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
    if (current_level() <= level::warn) {
        write(level::warn, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
    write(level::error, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
    if (current_level() <= level::debug) {
        write(level::debug, fmt::format(f, std::forward<Args>(args)...));
    }
}

/// A thread's log lines gathered in a fixed buffer and written with one
/// write(2) per flush (a shard flushes once per loop turn): no allocation and
/// no syscall per line on the data path. One per thread.
class buffered {
public:
    template <typename... Args>
    void info(fmt::format_string<Args...> f, Args&&... args) noexcept {
        line(level::info, f, std::forward<Args>(args)...);
    }
    template <typename... Args>
    void warn(fmt::format_string<Args...> f, Args&&... args) noexcept {
        line(level::warn, f, std::forward<Args>(args)...);
    }
    /// Writes what is buffered. Call at the end of each loop turn.
    void flush() noexcept;

private:
    static constexpr size_t capacity = 64 * 1024;
    static constexpr size_t max_line = 1024;

    template <typename... Args>
    void line(level l, fmt::format_string<Args...> f, Args&&... args) noexcept {
        if (current_level() > l) {
            return;
        }
        if (capacity - _len < max_line) {
            flush();
        }
        size_t start = _len;
        _len += prefix(l, _buf + _len);
        try {
            auto r = fmt::format_to_n(_buf + _len, max_line - (_len - start) - 1, f, std::forward<Args>(args)...);
            _len += std::min<size_t>(r.size, max_line - (_len - start) - 1);
        } catch (...) {
            // A formatting error must not kill a shard: keep the prefix only.
        }
        _buf[_len++] = '\n';
    }
    /// "2024-12-05T10:30:45Z [INFO] " into `out`; returns its length.
    size_t prefix(level l, char* out) noexcept;

    char _buf[capacity];
    size_t _len = 0;
    long _stamp_second = -1;
    char _stamp[24] = {};
};

} // namespace zt::log
