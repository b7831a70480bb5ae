// DNS over TCP/TLS framing (RFC 7766 §8, RFC 7858 §3.3): each message is preceded by its length as 2 bytes in
// network order. Header-only so the per-frame check inlines into the DoT receive loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace zt::dns {

inline constexpr size_t frame_prefix_size = 2;
/// A receive buffer of this size always holds a complete frame.
inline constexpr size_t max_frame_size = frame_prefix_size + 65535;

enum class frame_status : uint8_t {
    complete,   ///< `message` is the next message, `consumed` bytes (prefix included) may be dropped
    need_more,  ///< keep reading until the stream holds `needed` bytes
    empty_frame ///< length prefix 0: no DNS message is that short, the stream is broken: close
};

struct frame {
    frame_status status = frame_status::need_more;
    std::span<const std::byte> message; ///< points into the stream, when complete
    size_t consumed = 0;                ///< when complete
    size_t needed = frame_prefix_size;  ///< when need_more: total stream bytes that complete the frame
};

/// Returns the first frame of `stream` (received bytes not consumed yet). Several pipelined queries: call again on
/// stream.subspan(consumed). Any thread.
inline frame next_frame(std::span<const std::byte> stream) noexcept {
    if (stream.size() < frame_prefix_size) {
        return frame{frame_status::need_more, {}, 0, frame_prefix_size};
    }
    const size_t len = (std::to_integer<size_t>(stream[0]) << 8) | std::to_integer<size_t>(stream[1]);
    if (len == 0) {
        return frame{frame_status::empty_frame, {}, 0, 0};
    }
    const size_t total = frame_prefix_size + len;
    if (stream.size() < total) {
        return frame{frame_status::need_more, {}, 0, total};
    }
    return frame{frame_status::complete, stream.subspan(frame_prefix_size, len), total, 0};
}

/// Writes the 2-byte prefix for a message of `message_size` bytes into out[0..1]. False when `out` is shorter than
/// 2 bytes or the size is 0 or over 65535. Any thread.
inline bool write_frame_prefix(std::span<std::byte> out, size_t message_size) noexcept {
    if (out.size() < frame_prefix_size || message_size == 0 || message_size > 65535) {
        return false;
    }
    out[0] = static_cast<std::byte>(message_size >> 8);
    out[1] = static_cast<std::byte>(message_size & 0xff);
    return true;
}

} // namespace zt::dns
