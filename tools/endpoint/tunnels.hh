// Transparent tunnels: for each private zone in the catalog, a stable local address (tunnel_net.hh) and a listener
// on it at each of the service's ports (from SRV); the stub answers A queries for the name with that address. Each
// accepted connection becomes a client bridge to one of the proxy's addresses, SNI = the name. Names under a zone get
// their own address on first query (the proxy routes them by the longest zone suffix). Single-threaded.
#pragma once

#include "common/tls/tls.hh"
#include "tools/endpoint/address_choice.hh"
#include "tools/endpoint/bridge.hh"
#include "tools/endpoint/bundle.hh"
#include "tools/endpoint/loop.hh"
#include "tools/endpoint/tunnel_net.hh"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zt::endpoint {

class tunnels {
public:
    /// `proxies`: the bundle's proxy addresses; outlives the tunnels.
    tunnels(loop& l, const tls::context& ctx, const bundle& b, address_choice& proxies, ipv4_net net);
    ~tunnels();

    /// The catalog's zones with their ports (from SRV). Zones that vanished lose their listeners (open tunnels
    /// stay: the proxy cuts them if the access was revoked); new zones get theirs.
    void update(const std::map<std::string, std::vector<uint16_t>>& zones);
    /// The local address (host order) for an A query for `name`, when it is a tunneled zone or a name under one.
    std::optional<uint32_t> address_for(const std::string& name);
    /// Deadlines and sweeping closed tunnels; returns when it next needs to run.
    ms_t tick(ms_t now);
    size_t open_tunnels() const noexcept { return _bridges.size(); }

private:
    struct listener : io_handler {
        tunnels* t = nullptr;
        std::string name;
        uint32_t addr = 0;
        uint16_t port = 0;
        fd_watch w;
        void on_io(uint32_t) override { t->on_accept(*this); }
    };
    struct entry {
        std::string zone;
        std::vector<uint16_t> ports;
        uint32_t addr = 0;
        std::vector<std::unique_ptr<listener>> listeners;
    };

    void open_listeners(const std::string& name, entry& e);
    void close_name(const std::string& name);
    void on_accept(listener& l);

    loop& _loop;
    const tls::context& _ctx;
    const bundle& _bundle;
    address_choice& _proxies;
    address_allocator _alloc;
    std::map<std::string, std::vector<uint16_t>> _zones;
    std::map<std::string, entry> _names; ///< zones and the names under them that were asked for
    std::vector<std::unique_ptr<bridge>> _bridges;
    std::vector<std::unique_ptr<listener>> _closed; ///< freed at the next tick
};

} // namespace zt::endpoint
