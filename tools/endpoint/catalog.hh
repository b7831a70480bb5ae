// Learns from the DoT server which private zones this certificate may see (PTR `_catalog._ztdns.<server_name>`)
// and, for tunnels, the port of each (SRV `_ztdns._tcp.<zone>`); asks again every interval and on SIGHUP, so new
// authorizations appear and revoked ones vanish. A failed fetch keeps what was known. Single-threaded.
#pragma once

#include "tools/endpoint/dot_pool.hh"
#include "tools/endpoint/loop.hh"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace zt::endpoint {

class catalog {
public:
    /// Called when the zones (or their ports) changed: zone → ports (empty when SRV gave none or was not asked).
    using on_change = std::function<void(const std::map<std::string, std::vector<uint16_t>>&)>;

    catalog(loop& l, dot_pool& dot, std::string server_name, bool want_ports, uint32_t interval_s, uint32_t timeout_ms,
            on_change cb);
    /// Fetches now (at start, and on SIGHUP).
    void refresh();
    ms_t tick(ms_t now);
    bool known() const noexcept { return _known; }

private:
    void on_catalog(std::span<const std::byte> answer);
    void ask_ports(std::vector<std::string> zones);
    void done_ports();

    loop& _loop;
    dot_pool& _dot;
    std::string _server_name;
    std::string _name;
    bool _want_ports;
    uint32_t _interval_ms;
    uint32_t _timeout_ms;
    on_change _cb;
    bool _busy = false;
    bool _known = false;
    bool _again = false; ///< a refresh was asked while one ran
    ms_t _next = 0;
    uint16_t _id = 0;
    unsigned _srv_left = 0;
    std::map<std::string, std::vector<uint16_t>> _zones;    ///< what we serve
    std::map<std::string, std::vector<uint16_t>> _building; ///< the fetch in progress
};

} // namespace zt::endpoint
