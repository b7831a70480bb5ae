// The local DNS stub (UDP and TCP, default 127.0.0.1:53): each query is answered from the tunnels (A: the local
// address, other types: NODATA), from the cache, by the machine's previous resolver (--split, names outside the
// private zones), or over DoT. A query that cannot be answered in time gets SERVFAIL; a UDP answer larger than the
// client allows comes back truncated (TC) so that it asks again over TCP. Single-threaded.
#pragma once

#include "common/dns/wire.hh"
#include "common/net/socket.hh"
#include "tools/endpoint/cache.hh"
#include "tools/endpoint/dot_pool.hh"
#include "tools/endpoint/loop.hh"
#include "tools/endpoint/plain_resolver.hh"
#include "tools/endpoint/tunnels.hh"

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace zt::endpoint {

struct stub_config {
    uint32_t query_timeout_ms = 2500;
    bool split = false;
    uint32_t tunnel_ttl = 30; ///< of the A records that point at tunnel addresses
};

class stub {
public:
    stub(loop& l, stub_config cfg, dot_pool& dot, dns_cache& cache, tunnels* tun, plain_resolver* fallback);
    ~stub();

    /// Binds UDP and TCP on `a`. False with `err` naming the address.
    bool listen(const net::address& a, std::string& err);
    /// The private zones (for --split), from the catalog.
    void set_private_zones(std::vector<std::string> zones) { _zones = std::move(zones); }
    ms_t tick(ms_t now);

private:
    /// Where an answer goes.
    struct client_ref {
        bool tcp = false;
        uint64_t tcp_id = 0;
        sockaddr_storage addr{};
        socklen_t addr_len = 0;
    };
    struct udp_side : io_handler {
        stub* s = nullptr;
        void on_io(uint32_t) override { s->on_udp(); }
    };
    struct tcp_listener : io_handler {
        stub* s = nullptr;
        void on_io(uint32_t) override { s->on_tcp_accept(); }
    };
    struct tcp_client : io_handler {
        stub* s = nullptr;
        uint64_t id = 0;
        fd_watch w;
        byte_buffer in{2 * 65540};
        std::vector<std::byte> out;
        size_t out_sent = 0;
        unsigned pending = 0;
        bool eof = false;
        bool done = false;
        ms_t idle_deadline = 0;
        void on_io(uint32_t) override { s->on_tcp(*this); }
    };

    void on_udp();
    void on_tcp_accept();
    void on_tcp(tcp_client& c);
    void tcp_update(tcp_client& c);
    void handle(std::span<const std::byte> msg, const client_ref& to);
    void reply(const client_ref& to, std::span<const std::byte> query, std::span<const std::byte> answer);
    void reply_servfail(const client_ref& to, std::span<const std::byte> query);
    bool is_private(std::string_view qname) const;

    loop& _loop;
    stub_config _cfg;
    dot_pool& _dot;
    dns_cache& _cache;
    tunnels* _tun;
    plain_resolver* _fallback;
    std::vector<std::string> _zones;
    udp_side _udp_side;
    tcp_listener _tcp_side;
    fd_watch _udp, _tcp;
    uint64_t _next_tcp_id = 1;
    std::unordered_map<uint64_t, std::unique_ptr<tcp_client>> _clients;
};

} // namespace zt::endpoint
