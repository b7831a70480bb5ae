// The control socket protocol between `ztdns` and ztdns-control: one request
// (the CLI's argv) and one reply (exit status + text) per connection, each a
// little-endian u32 length followed by the bytes. Blocking I/O with the
// socket's SO_RCVTIMEO/SO_SNDTIMEO as the deadline.
#pragma once

#include "control/controller.hh"

#include <string>
#include <vector>

namespace zt::control::protocol {

inline constexpr uint32_t max_request = 64 * 1024;
inline constexpr uint32_t max_reply = 64 * 1024 * 1024;

/// Sets both timeouts of a socket, so that no wait is unbounded.
void set_timeouts(int fd, int ms) noexcept;

bool write_request(int fd, const std::vector<std::string>& args, std::string& err);
bool read_request(int fd, std::vector<std::string>& args, std::string& err);
bool write_reply(int fd, const reply& r, std::string& err);
bool read_reply(int fd, reply& r, std::string& err);

/// Connects to a unix socket path; -1 and `err` on failure.
int connect_unix(const std::string& path, std::string& err);
/// Binds and listens on a unix socket path with `mode` (replacing a stale socket).
int listen_unix(const std::string& path, mode_t mode, std::string& err);

} // namespace zt::control::protocol
