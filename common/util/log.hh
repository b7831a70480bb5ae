// Log lines in the seed guide's format: "2024-12-05T10:30:45Z [INFO] DNS: ...".
// One write(2) per line to stderr, so lines from several threads never interleave.
#pragma once

#include <fmt/format.h>

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

} // namespace zt::log
