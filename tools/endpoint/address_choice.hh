// Several addresses of the appliance (the proxy's, the DoT server's) and which of them failed lately: each connection
// tries them in turn, starting one further than the previous connection did so that load spreads; an address that
// failed is passed over for a while (passive health, as the data plane does for backends): 5 s after a failure,
// doubling with each failure in a row up to a minute, forgotten at the first success. Pure; single-threaded.
#pragma once

#include "common/net/socket.hh"
#include "tools/endpoint/loop.hh"

#include <cstddef>
#include <vector>

namespace zt::endpoint {

class address_choice {
public:
    /// `start`: where the first order() begins (a random number, so that endpoints started together spread).
    address_choice(std::vector<net::address> addresses, size_t start);

    size_t size() const noexcept { return _entries.size(); }
    const net::address& at(size_t i) const noexcept { return _entries[i].addr; }

    /// Every address once, in the order one connection should try them: those not down at `now` first, in turn
    /// from one further than the previous call; then those down, the soonest back first.
    std::vector<size_t> order(ms_t now);
    /// A connection to address `i` failed (connect, TLS handshake, or no answer in time): pass it over for a while.
    void failed(size_t i, ms_t now);
    /// A connection to address `i` worked: it is healthy again.
    void succeeded(size_t i) noexcept;
    /// Address `i` is passed over at `now`.
    bool down(size_t i, ms_t now) const noexcept { return _entries[i].down_until > now; }

private:
    struct entry {
        net::address addr;
        ms_t down_until = 0;
        unsigned failures = 0; ///< in a row
    };
    std::vector<entry> _entries;
    size_t _next;
};

} // namespace zt::endpoint
