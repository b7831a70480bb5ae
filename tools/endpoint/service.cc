// Service mode (see service.hh).
#include "tools/endpoint/service.hh"

#include "common/util/log.hh"

#include <netdb.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace zt::endpoint {
namespace {

/// A parked connection the proxy closed sooner than this after the handshake counts as a refusal.
constexpr ms_t short_lived_ms = 1000;
/// Parked connections older than this are replaced (the proxy keeps one 10 minutes).
constexpr ms_t recycle_ms = 8 * 60 * 1000;
/// The first wait after a failure; it doubles after each more.
constexpr ms_t first_backoff_ms = 200;

std::optional<net::address> resolve(const std::string& host_port, std::string& err) {
    net::address a;
    if (net::parse_address(host_port, a)) {
        return a;
    }
    auto colon = host_port.rfind(':');
    std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0 || !res) {
        err = fmt::format("--target {}: {}", host_port, gai_strerror(rc));
        return std::nullopt;
    }
    std::memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
    a.length = res->ai_addrlen;
    freeaddrinfo(res);
    return a;
}

} // namespace

service_pool::service_pool(loop& l, const tls::context& ctx, const bundle& b, address_choice& proxies, unsigned pool)
    : _loop(l), _ctx(ctx), _bundle(b), _proxies(proxies), _pool(pool) {}

service_pool::~service_pool() {
    for (auto& c : _conns) {
        c->cut("the endpoint stops");
    }
}

bool service_pool::set_targets(const std::vector<target_spec>& targets, std::string& err) {
    for (const auto& t : targets) {
        auto a = resolve(t.address, err);
        if (!a) {
            return false;
        }
        if (t.name.empty()) {
            _default_target = *a;
        } else {
            _targets[t.name] = *a;
        }
    }
    if (_proxies.size() == 0) {
        err = fmt::format("{}/endpoint.json lists no proxy to dial", _bundle.dir);
        return false;
    }
    return true;
}

std::optional<net::address> service_pool::target_for(const std::string& name) const {
    if (auto it = _targets.find(name); it != _targets.end()) {
        return it->second;
    }
    return _default_target;
}

void service_pool::dial(ms_t) {
    _conns.push_back(bridge::service(_loop, _proxies, {&_ctx, _bundle.server_name, _bundle.server_name, service_alpn},
                                     [this](const std::string& name) { return target_for(name); }));
}

ms_t service_pool::tick(ms_t now) {
    ms_t next = now + 1000;
    for (auto& c : _conns) {
        next = std::min(next, c->tick(now));
    }
    // Closed parked connections tell how the proxy is doing.
    for (auto& c : _conns) {
        if (!c->done() || c->taken() || c->cut_here()) {
            continue;
        }
        if (!c->reached_open() || now - c->opened_ms() < short_lived_ms) {
            if (_failures > 0 && c->reached_open() && c->started_ms() <= _last_failure_ms) {
                // Parked, and dialled no later than the last failure: when the proxy stops, every young parked
                // connection closes at once, and that is one failure, not one each (six made a 6.4 s backoff after
                // a quick restart). The dial decides (started_ms(): not taken, so never reset), not the open: the
                // last ones may open in the same millisecond as the close that counted. No probe is dialled in the
                // millisecond of a failure (the backoff). A dial that fails to reach the proxy always counts, so the
                // backoff keeps growing while it is away.
                continue;
            }
            ++_failures;
            std::string why = c->error().empty() ? "closed by the proxy at once" : c->error();
            if (why != _last_error || _failures == 1) {
                log::warn("Endpoint: service connection to the proxy failed: {}; retrying with backoff", why);
                _last_error = why;
            }
            _next_dial = now + backoff_ms(first_backoff_ms, _failures);
            _last_failure_ms = now;
        }
    }
    // The proxy works again when a connection stays up a while, or when the proxy hands one dialled since the last
    // failure a tunnel (clients waiting since the outage take each new connection at once).
    for (auto& c : _conns) {
        const bool up_a_while = !c->done() && c->reached_open() && now - c->opened_ms() >= short_lived_ms;
        if (_failures > 0 && (up_a_while || (c->taken() && c->opened_ms() >= _last_failure_ms))) {
            log::info("Endpoint: service {}: connected to the proxy again", _bundle.cn);
            _failures = 0;
            _next_dial = now;
            _last_error.clear();
        }
    }
    std::erase_if(_conns, [](const auto& c) { return c->done(); });
    // Parked connections stay on the proxy shard the kernel picked: keep `pool` of them, and at least one on every
    // shard (a client tunnel only takes a parked connection of its own shard).
    size_t dialling = 0, parked = 0;
    std::vector<size_t> per_shard;
    for (auto& c : _conns) {
        if (c->done() || c->taken()) {
            continue;
        }
        if (c->parked_shard() < 0) {
            ++dialling;
            continue;
        }
        _shards = std::max<size_t>(_shards, c->proxy_shards());
        per_shard.resize(std::max(per_shard.size(), _shards));
        ++per_shard[size_t(c->parked_shard())];
        ++parked;
        // The proxy drops a parked connection after 10 minutes: replace it before then.
        if (now - c->opened_ms() > recycle_ms) {
            c->cut("recycled");
        }
    }
    per_shard.resize(_shards);
    size_t missing = size_t(std::count(per_shard.begin(), per_shard.end(), size_t(0)));
    const size_t live = dialling + parked;
    size_t want = live < _pool ? _pool - live : 0;
    if (want == 0 && missing > 0 && dialling == 0 && _failures == 0) {
        // Another connection, hoping the kernel's hash puts it on an unsupplied shard. At the cap, give one back
        // from the best-supplied shard first, so probing goes on without piling up connections.
        if (live >= _pool + 2 * _shards) {
            auto fullest = size_t(std::max_element(per_shard.begin(), per_shard.end()) - per_shard.begin());
            for (auto& c : _conns) {
                if (!c->done() && !c->taken() && c->parked_shard() == int(fullest)) {
                    c->cut("surplus on its shard");
                    break;
                }
            }
        }
        want = 1;
    }
    if (parked >= _pool && missing == 0 && _last_parked != parked) {
        log::info("Endpoint: service {}: {} connection(s) ready at the proxy ({} shard(s) supplied)", _bundle.cn,
                  parked, _shards);
    }
    _last_parked = parked >= _pool && missing == 0 ? parked : 0;
    if (want > 0 && now >= _next_dial) {
        if (_failures == 0) {
            while (want-- > 0) {
                dial(now);
            }
        } else {
            dial(now); // probing: one at a time while the proxy fails
            _next_dial = now + backoff_ms(first_backoff_ms, _failures);
        }
    }
    if (want > 0) {
        next = std::min(next, std::max(_next_dial, now + 10));
    }
    return next;
}

} // namespace zt::endpoint
