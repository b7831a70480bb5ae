// One outgoing mutual-TLS connection over a non-blocking TCP socket, driven by the endpoint's loop: connect, the
// handshake (the peer's certificate verified against the bundle CA and the server name; SNI and ALPN as asked),
// then plaintext in and out through bounded buffers. wolfSSL only sees our buffers (common/tls). Used by the DoT
// connections, the client tunnels and the dialled-out service connections; single-threaded.
#pragma once

#include "common/net/socket.hh"
#include "common/tls/tls.hh"
#include "tools/endpoint/loop.hh"

#include <memory>
#include <span>
#include <string>

namespace zt::endpoint {

class tls_stream {
public:
    enum class phase : uint8_t { idle, connecting, handshaking, open, failed };

    struct params {
        const tls::context* ctx = nullptr;
        std::string sni;         ///< sent as server name (empty: none)
        std::string verify_name; ///< the name the peer's certificate must carry
        std::string alpn;        ///< offered and required when not empty
    };

    /// `owner` receives the socket's events (it calls progress() and its own pump).
    tls_stream(loop& l, io_handler* owner);
    tls_stream(const tls_stream&) = delete;
    tls_stream& operator=(const tls_stream&) = delete;

    /// Starts a non-blocking connect, dropping the connection of an earlier attempt (an RST) and its state. False
    /// (and phase failed, error() set) when it fails at once.
    bool connect(const net::address& to, params p);

    /// Moves bytes between the socket and the buffers, completes the connect and the handshake. True when
    /// anything changed. Call it on every event and in the owner's pump loop.
    bool progress();

    /// Decrypts into `dst` (open only); 0 when nothing is ready. Check failed() and peer_finished() after.
    size_t read_plain(std::span<std::byte> dst);
    /// Encrypts from `src` as far as the ciphertext buffer has room; returns the bytes taken.
    size_t write_plain(std::span<const std::byte> src);
    /// Room for at least one full record: write_plain() will take something.
    bool can_write() const noexcept;
    /// Queues close_notify; the FIN follows once every byte is sent (a TLS half-close).
    void shutdown_write();

    /// Sets the socket's epoll interest from the state. Call at the end of the owner's pump.
    void update_interest();
    /// Closes the socket (an RST when `abort`).
    void close(bool abort = false);

    phase state() const noexcept { return _phase; }
    bool open() const noexcept { return _phase == phase::open; }
    bool failed() const noexcept { return _phase == phase::failed; }
    const std::string& error() const noexcept { return _error; }
    /// The description of the fatal alert the peer sent (-1 if none): the appliance says why it refuses us with
    /// certificate_revoked (44) or access_denied (49).
    int peer_alert() const noexcept { return _tls.peer_alert(); }
    /// The peer is done sending: close_notify, or its FIN after everything before it was read.
    bool peer_finished() const noexcept;
    /// The peer's FIN came without close_notify (a cut, not an end).
    bool peer_cut() const noexcept { return peer_finished() && !_notify_received; }
    bool write_shut() const noexcept { return _shut_queued; }
    /// Every queued ciphertext byte has been sent.
    bool flushed() const noexcept { return _out.length == _out_sent; }
    /// Plaintext or ciphertext is waiting to be read.
    bool readable() const noexcept;
    bool fin_sent() const noexcept { return _fin_sent; }
    const net::address& peer() const noexcept { return _peer; }

private:
    void fail(std::string why);
    /// wolfSSL's reason for the last failure, with the peer's alert when it sent one.
    std::string tls_error() const;
    bool start_tls();
    bool recv_some();
    bool flush();

    loop& _loop;
    io_handler* _owner;
    fd_watch _watch;
    params _p;
    net::address _peer;
    phase _phase = phase::idle;
    std::string _error;
    tls::session _tls;
    byte_buffer _cin{32 * 1024};
    std::unique_ptr<std::byte[]> _out_storage;
    tls::out_buffer _out;
    uint32_t _out_sent = 0;
    bool _tcp_eof = false;
    bool _notify_received = false;
    bool _shut_queued = false;
    bool _fin_sent = false;
};

} // namespace zt::endpoint
