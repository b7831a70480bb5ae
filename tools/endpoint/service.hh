// Service mode: keeps `pool` mutual-TLS connections dialled out to the proxy (SNI = the server name, ALPN
// "ztdns-service/1"), so that a service behind NAT needs no inbound port. The proxy hands a client tunnel over one
// of them with a "ZTDNS-TUNNEL <name> <client-cn>\n" line; the bridge then connects the local target, and a
// replacement is dialled at once. Each dial tries the proxy's addresses in turn (bridge.hh); when every one failed,
// the next dial waits a backoff. Single-threaded.
#pragma once

#include "common/net/socket.hh"
#include "common/tls/tls.hh"
#include "tools/endpoint/address_choice.hh"
#include "tools/endpoint/bridge.hh"
#include "tools/endpoint/bundle.hh"
#include "tools/endpoint/loop.hh"
#include "tools/endpoint/options.hh"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zt::endpoint {

inline constexpr const char* service_alpn = "ztdns-service/1";

class service_pool {
public:
    /// `proxies`: the bundle's proxy addresses; outlives the pool.
    service_pool(loop& l, const tls::context& ctx, const bundle& b, address_choice& proxies, unsigned pool);
    ~service_pool();
    /// Resolves the --target addresses (at start; host names through the system resolver). False with `err`.
    bool set_targets(const std::vector<target_spec>& targets, std::string& err);
    ms_t tick(ms_t now);
    /// Failures in a row the backoff follows (0 while the proxy works).
    unsigned failures() const noexcept { return _failures; }

private:
    std::optional<net::address> target_for(const std::string& name) const;
    void dial(ms_t now);

    loop& _loop;
    const tls::context& _ctx;
    const bundle& _bundle;
    address_choice& _proxies;
    unsigned _pool;
    std::map<std::string, net::address> _targets;
    std::optional<net::address> _default_target;
    std::vector<std::unique_ptr<bridge>> _conns;
    unsigned _failures = 0;
    ms_t _next_dial = 0;
    ms_t _last_failure_ms = 0;
    size_t _last_parked = 0;
    size_t _shards = 0; ///< the proxy's shard count, once it said
    std::string _last_error;
};

} // namespace zt::endpoint
