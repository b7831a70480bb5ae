// The resolver the machine had before the endpoint, for --split: plain DNS over UDP (a connected socket, our own
// message ids) or, for a client that asked over TCP, one TCP exchange per query. Every query ends once: the
// answer, or a failure at its deadline. Single-threaded.
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

    plain_resolver(loop& l, net::address server);
    ~plain_resolver();
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
    struct udp_side : io_handler {
        plain_resolver* r = nullptr;
        void on_io(uint32_t) override { r->on_udp(); }
    };
    struct tcp_exchange : io_handler {
        plain_resolver* r = nullptr;
        uint16_t id = 0;
        fd_watch w;
        std::vector<std::byte> out;
        size_t sent = 0;
        byte_buffer in{65540};
        bool connecting = true;
        bool done = false;
        void on_io(uint32_t) override { r->on_tcp(*this); }
    };

    void on_udp();
    void on_tcp(tcp_exchange& x);
    void finish(uint16_t id, std::span<const std::byte> answer);

    loop& _loop;
    net::address _server;
    udp_side _udp_side;
    fd_watch _udp;
    uint16_t _next_id;
    std::unordered_map<uint16_t, request> _requests;
    std::unordered_map<uint16_t, std::unique_ptr<tcp_exchange>> _tcp;
};

} // namespace zt::endpoint
