// The resolver the machine had before the endpoint, for --split: plain DNS over UDP or, for a client that asked over
// TCP, TCP. Every query is its own exchange: its own socket, so its own random source port, and a random message id
// (RFC 5452), so an off-path sender must guess both; an answer counts only on the socket its query left by. Every
// query ends once: the answer, or a failure at its deadline. Single-threaded.
#pragma once

#include "common/net/socket.hh"
#include "tools/endpoint/loop.hh"

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace zt::endpoint {

class plain_resolver {
public:
    using callback = std::function<void(std::span<const std::byte> answer)>;

    /// Exchanges in flight at most; past it a query fails at once (each holds a socket).
    static constexpr size_t max_in_flight = 256;

    plain_resolver(loop& l, net::address server);
    ~plain_resolver();
    /// Checks that the server can be reached (a socket connected to it), for a clear error at start.
    bool open(std::string& err);
    void submit(std::span<const std::byte> query, ms_t deadline, bool over_tcp, callback cb);
    ms_t tick(ms_t now);
    const net::address& server() const noexcept { return _server; }

private:
    struct request {
        std::vector<std::byte> msg; ///< with our id
        uint16_t client_id = 0;
        size_t q_off = 0, q_len = 0;
        ms_t deadline = 0;
        callback cb;
    };
    struct exchange : io_handler {
        plain_resolver* r = nullptr;
        uint16_t id = 0;
        bool tcp = false;
        fd_watch w;
        // TCP: the framed query going out, the framed answer coming in.
        std::vector<std::byte> out;
        size_t sent = 0;
        std::unique_ptr<byte_buffer> in;
        bool connecting = true;
        bool done = false;
        void on_io(uint32_t) override { tcp ? r->on_tcp(*this) : r->on_udp(*this); }
    };

    void on_udp(exchange& x);
    void on_tcp(exchange& x);
    uint16_t fresh_id() const;
    void finish(uint16_t id, std::span<const std::byte> answer);

    loop& _loop;
    net::address _server;
    std::unordered_map<uint16_t, request> _requests;
    std::unordered_map<uint16_t, std::unique_ptr<exchange>> _exchanges; ///< done ones are freed at the next tick
};

} // namespace zt::endpoint
