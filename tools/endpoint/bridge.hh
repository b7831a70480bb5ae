// A tunnel: a plain TCP connection on one side, a mutual-TLS connection to the proxy on the other, bytes forwarded
// both ways through bounded buffers. A side is read only while the buffer towards the other has room (backpressure);
// an end of input on one side becomes a half-close on the other (FIN → close_notify + FIN, close_notify → FIN),
// as in the proxy; a cut (an RST, a FIN without close_notify, a TLS error) cuts the other side with an RST.
//
// Two roles: a client tunnel (an application's connection accepted on a tunnel address, carried to the proxy with
// SNI = the private name) and a service connection (dialled out to the proxy, parked until the proxy sends
// "ZTDNS-TUNNEL <name> <client-cn>\n", then connected to the local target). Either tries the proxy's addresses in
// turn (address_choice.hh) until one completes the TLS handshake, each within its own timeout and all within a
// bound; nothing of the application's reaches a proxy before that, so no byte is lost or sent twice. Single-threaded.
#pragma once

#include "common/net/socket.hh"
#include "tools/endpoint/address_choice.hh"
#include "tools/endpoint/loop.hh"
#include "tools/endpoint/tls_stream.hh"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zt::endpoint {

class bridge {
public:
    /// Where a service connection's tunnel goes, by the name in the header; nullopt refuses it.
    using target_lookup = std::function<std::optional<net::address>(const std::string& name)>;

    /// A client tunnel for `accepted_fd` (non-blocking; owned from now on) towards one of `proxies`, which must
    /// outlive the bridge and learns which addresses failed.
    static std::unique_ptr<bridge> client(loop& l, int accepted_fd, std::string name, address_choice& proxies,
                                          tls_stream::params p);
    /// A parked service connection towards one of `proxies` (as above).
    static std::unique_ptr<bridge> service(loop& l, address_choice& proxies, tls_stream::params p,
                                           target_lookup lookup);

    ~bridge();
    bridge(const bridge&) = delete;
    bridge& operator=(const bridge&) = delete;

    /// Deadlines; returns when it next needs to run.
    ms_t tick(ms_t now);
    /// Closed: the owner may free it (after this turn's events).
    bool done() const noexcept { return _done; }
    /// The TLS handshake completed at some point.
    bool reached_open() const noexcept { return _opened_ms != 0; }
    ms_t opened_ms() const noexcept { return _opened_ms; }
    /// When it began dialling the proxy; for a service connection the proxy handed a tunnel, when it did.
    ms_t started_ms() const noexcept { return _started_ms; }
    /// Service role: the proxy handed over a client tunnel (a replacement should be dialled).
    bool taken() const noexcept { return _taken; }
    /// Service role: the proxy shard this connection is parked on (-1 until the proxy said), and how many it has.
    int parked_shard() const noexcept { return _parked_shard; }
    unsigned proxy_shards() const noexcept { return _proxy_shards; }
    /// Why it closed, when it was an error (empty for a clean end).
    const std::string& error() const noexcept { return _error; }
    /// Closes both sides now (shutdown of the endpoint, a surplus or old parked connection).
    void cut(const char* why);
    /// It was closed by cut(), not by a peer or an error.
    bool cut_here() const noexcept { return _cut_here; }

private:
    enum class role : uint8_t { client, service };
    struct side : io_handler {
        bridge* b = nullptr;
        void on_io(uint32_t) override { b->pump(); }
    };

    bridge(loop& l, role r, address_choice& proxies, tls_stream::params p);
    /// Connects to the next proxy address to try; when none is left (or no time), finishes with every reason.
    void connect_proxy();
    /// The current proxy address failed before the TLS session opened: remember why, then the next one.
    void proxy_failed(std::string why);
    void pump();
    bool plain_connecting_done();
    bool read_plain();
    bool write_plain();
    bool take_header();
    void finish(std::string why, bool abort);
    void update_interest();

    loop& _loop;
    role _role;
    side _plain_side, _tls_side;
    fd_watch _plain;
    tls_stream _tls;
    address_choice& _proxies;
    tls_stream::params _params;
    std::vector<size_t> _order;   ///< the proxy addresses to try, in turn
    size_t _attempt = 0;          ///< the one being tried, in _order
    std::string _failures;        ///< why the addresses tried so far failed
    byte_buffer _up{64 * 1024};   ///< plain → TLS
    byte_buffer _down{64 * 1024}; ///< TLS → plain
    std::string _name;            ///< the private name (client) or the header's name (service)
    std::string _client_cn;       ///< service role: who the tunnel is for
    target_lookup _lookup;
    net::address _target;
    bool _plain_connecting = false;
    bool _plain_eof = false;
    bool _plain_wr_shut = false;
    bool _awaiting_header = false;
    bool _taken = false;
    int _parked_shard = -1;
    unsigned _proxy_shards = 0;
    bool _done = false;
    bool _cut_here = false;
    bool _again = false;  ///< the pump stopped at its round limit with work left
    ms_t _started_ms = 0; ///< dialled; for a service connection, reset when the proxy hands it a tunnel
    ms_t _opened_ms = 0;
    ms_t _deadline_ms = 0; ///< this proxy address's connect and handshake, or the target's connect
    ms_t _give_up_ms = 0;  ///< every proxy address together
    uint64_t _bytes_up = 0, _bytes_down = 0;
    std::string _error;
};

} // namespace zt::endpoint
