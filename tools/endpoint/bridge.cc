// Tunnels between a plain TCP connection and a mutual-TLS one (see bridge.hh).
#include "tools/endpoint/bridge.hh"

#include "common/util/log.hh"
#include "tools/endpoint/names.hh"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::endpoint {
namespace {

/// One proxy address: TCP connect and TLS handshake. The last address left may take whatever remains of the bound.
constexpr ms_t proxy_attempt_timeout_ms = 3000;
/// Every proxy address together.
constexpr ms_t proxy_timeout_ms = 10000;
constexpr ms_t target_connect_timeout_ms = 5000;

} // namespace

bridge::bridge(loop& l, role r, address_choice& proxies, tls_stream::params p)
    : _loop(l), _role(r), _tls(l, &_tls_side), _proxies(proxies), _params(std::move(p)) {
    _plain_side.b = this;
    _tls_side.b = this;
    _started_ms = l.now();
    _give_up_ms = _started_ms + proxy_timeout_ms;
    _order = proxies.order(_started_ms);
}

bridge::~bridge() {
    _plain.reset();
    _tls.close();
}

std::unique_ptr<bridge> bridge::client(loop& l, int accepted_fd, std::string name, address_choice& proxies,
                                       tls_stream::params p) {
    std::unique_ptr<bridge> b(new bridge(l, role::client, proxies, std::move(p)));
    b->_name = std::move(name);
    b->_plain.attach(l, accepted_fd, &b->_plain_side);
    set_nodelay(accepted_fd);
    b->connect_proxy();
    b->pump();
    return b;
}

std::unique_ptr<bridge> bridge::service(loop& l, address_choice& proxies, tls_stream::params p, target_lookup lookup) {
    std::unique_ptr<bridge> b(new bridge(l, role::service, proxies, std::move(p)));
    b->_lookup = std::move(lookup);
    b->_awaiting_header = true;
    b->connect_proxy();
    b->pump();
    return b;
}

void bridge::connect_proxy() {
    const ms_t now = _loop.now();
    if (_attempt < _order.size() && now < _give_up_ms) {
        _deadline_ms =
            _attempt + 1 == _order.size() ? _give_up_ms : std::min(now + proxy_attempt_timeout_ms, _give_up_ms);
        if (!_tls.connect(_proxies.at(_order[_attempt]), _params)) {
            proxy_failed(_tls.error()); // at once (no route): the next one; as deep as there are addresses
            return;
        }
        _tls.update_interest();
        return;
    }
    std::string untried;
    for (size_t k = _attempt; k < _order.size(); ++k) {
        untried += (untried.empty() ? "" : ", ") + _proxies.at(_order[k]).str();
    }
    finish(fmt::format("no proxy address worked: {}{}", _failures,
                       untried.empty() ? "" : "; out of time before " + untried),
           true);
}

void bridge::proxy_failed(std::string why) {
    const ms_t now = _loop.now();
    _proxies.failed(_order[_attempt], now);
    ++_attempt;
    if (_attempt < _order.size() && now < _give_up_ms) {
        log::warn("Endpoint: {}: {}; trying {}", _role == role::client ? "tunnel " + _name : "service connection", why,
                  _proxies.at(_order[_attempt]).str());
    }
    _failures += (_failures.empty() ? "" : "; ") + why;
    connect_proxy();
}

bool bridge::plain_connecting_done() {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(_plain.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        finish(fmt::format("cannot connect to the target {}: {}", _target.str(), std::strerror(err)), true);
        return true;
    }
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    if (::getpeername(_plain.fd(), reinterpret_cast<sockaddr*>(&ss), &sl) != 0) {
        return false;
    }
    _plain_connecting = false;
    _deadline_ms = 0;
    return true;
}

bool bridge::read_plain() {
    bool moved = false;
    while (!_plain_eof && _up.room() > 0) {
        std::byte* t = _up.tail();
        ssize_t n = ::recv(_plain.fd(), t, _up.tail_room(), 0);
        if (n > 0) {
            _up.commit(size_t(n));
            _bytes_up += uint64_t(n);
            moved = true;
        } else if (n == 0) {
            _plain_eof = true;
            moved = true;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            finish(
                fmt::format("{}: {}", _role == role::client ? "the application" : "the target", std::strerror(errno)),
                true);
            return true;
        }
    }
    return moved;
}

bool bridge::write_plain() {
    bool moved = false;
    while (!_down.empty()) {
        ssize_t n = ::send(_plain.fd(), _down.data(), _down.size(), MSG_NOSIGNAL);
        if (n > 0) {
            _down.consume(size_t(n));
            _bytes_down += uint64_t(n);
            moved = true;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else if (n < 0 && errno != EINTR) {
            finish(
                fmt::format("{}: {}", _role == role::client ? "the application" : "the target", std::strerror(errno)),
                true);
            return true;
        }
    }
    return moved;
}

bool bridge::take_header() {
    auto parked = parse_parked_line({_down.data(), _down.size()});
    if (parked.result == parked_line::status::need_more) {
        return false;
    }
    if (parked.result == parked_line::status::ok) {
        _down.consume(parked.consumed);
        _parked_shard = int(parked.shard);
        _proxy_shards = parked.shards;
        return true;
    }
    auto h = parse_tunnel_header({_down.data(), _down.size()});
    if (h.result == tunnel_header::status::need_more) {
        return false;
    }
    if (h.result == tunnel_header::status::bad) {
        std::string seen;
        for (size_t k = 0; k < std::min<size_t>(_down.size(), 48); ++k) {
            auto c = static_cast<unsigned char>(_down.data()[k]);
            seen += c >= 0x20 && c < 0x7f ? std::string(1, char(c)) : fmt::format("\\x{:02x}", c);
        }
        finish(fmt::format("the proxy sent no valid ZTDNS-TUNNEL header: \"{}\"", seen), true);
        return true;
    }
    _down.consume(h.consumed);
    _awaiting_header = false;
    _taken = true;
    _name = std::move(h.name);
    _client_cn = std::move(h.client_cn);
    _started_ms = _loop.now();
    auto target = _lookup ? _lookup(_name) : std::nullopt;
    if (!target) {
        finish(fmt::format("no --target for {}", _name), true);
        return true;
    }
    _target = *target;
    int err = 0;
    int fd = tcp_connect_nonblocking(_target.sa(), _target.length, err);
    if (fd < 0) {
        finish(fmt::format("cannot connect to the target {}: {}", _target.str(), std::strerror(err)), true);
        return true;
    }
    _plain.attach(_loop, fd, &_plain_side);
    _plain_connecting = true;
    _deadline_ms = _loop.now() + target_connect_timeout_ms;
    log::info("Endpoint: tunnel {} for {} → {}", _name, _client_cn, _target.str());
    return true;
}

void bridge::pump() {
    _again = false;
    int round = 0;
    for (; round < 64 && !_done; ++round) {
        bool moved = _tls.progress();
        if (_tls.failed() && _opened_ms == 0) {
            proxy_failed(_tls.error()); // nothing was sent through it yet: the next address
            continue;
        }
        if (_tls.failed()) {
            finish(_tls.error(), true);
            return;
        }
        if (_tls.open() && _opened_ms == 0) {
            _proxies.succeeded(_order[_attempt]);
            _opened_ms = _loop.now();
            _deadline_ms = 0; // open; a parked service connection waits as long as the proxy keeps it
        }
        if (_plain_connecting) {
            moved |= plain_connecting_done();
            if (_done) {
                return;
            }
        }
        const bool plain_ready = _plain.fd() >= 0 && !_plain_connecting;
        // Application (or target) → proxy.
        if (plain_ready) {
            moved |= read_plain();
            if (_done) {
                return;
            }
        }
        if (!_up.empty() && _tls.can_write()) {
            size_t n = _tls.write_plain({_up.data(), _up.size()});
            _up.consume(n);
            moved |= n > 0;
        }
        if (_plain_eof && _up.empty() && _tls.open() && !_tls.write_shut()) {
            _tls.shutdown_write();
            moved = true;
        }
        // Proxy → application (or target).
        if (_down.room() > 0 && _tls.readable()) {
            std::byte* t = _down.tail();
            size_t n = _tls.read_plain({t, _down.tail_room()});
            _down.commit(n);
            moved |= n > 0;
        }
        if (_tls.failed()) {
            finish(_tls.error(), true);
            return;
        }
        if (_awaiting_header && _tls.open()) {
            if (_tls.peer_finished()) {
                finish({}, false); // the proxy let a parked connection go
                return;
            }
            moved |= take_header();
            if (_done) {
                return;
            }
        }
        if (plain_ready) {
            moved |= write_plain();
            if (_done) {
                return;
            }
        }
        if (plain_ready && _down.empty() && !_plain_wr_shut && _tls.open() && _tls.peer_finished()) {
            if (_tls.peer_cut()) {
                finish("the proxy cut the connection", true);
                return;
            }
            ::shutdown(_plain.fd(), SHUT_WR);
            _plain_wr_shut = true;
            moved = true;
        }
        if (!moved) {
            break;
        }
    }
    if (_done) {
        return;
    }
    // Still moving after many rounds: let the other connections have a turn, come back at the tick.
    _again = round == 64;
    if (_plain_eof && _up.empty() && _tls.fin_sent() && _plain_wr_shut) {
        finish({}, false);
        return;
    }
    update_interest();
}

void bridge::update_interest() {
    if (_plain.fd() >= 0) {
        uint32_t ev = 0;
        if (_plain_connecting) {
            ev = EPOLLOUT;
        } else {
            if (!_plain_eof && _up.room() > 0) {
                ev |= EPOLLIN | EPOLLRDHUP;
            }
            if (!_down.empty()) {
                ev |= EPOLLOUT;
            }
        }
        _plain.set(ev);
    }
    _tls.update_interest();
}

void bridge::finish(std::string why, bool abort) {
    if (_done) {
        return;
    }
    _done = true;
    _error = std::move(why);
    int fd = _plain.release();
    if (fd >= 0) {
        if (abort) {
            close_abort(fd);
        } else {
            ::close(fd);
        }
    }
    _tls.close(abort);
    double secs = double(_loop.now() - _started_ms) / 1000.0;
    if (_role == role::client) {
        if (_error.empty()) {
            log::info("Endpoint: tunnel {} closed ({} bytes up, {} bytes down, {:.1f}s)", _name, _bytes_up, _bytes_down,
                      secs);
        } else {
            log::warn("Endpoint: tunnel {} cut: {} ({} bytes up, {} bytes down, {:.1f}s)", _name, _error, _bytes_up,
                      _bytes_down, secs);
        }
    } else if (_taken) {
        if (_error.empty()) {
            log::info("Endpoint: tunnel {} for {} closed ({} bytes in, {} bytes out, {:.1f}s)", _name, _client_cn,
                      _bytes_down, _bytes_up, secs);
        } else {
            log::warn("Endpoint: tunnel {} for {} cut: {}", _name, _client_cn, _error);
        }
    } else if (!_error.empty()) {
        log::debug("Endpoint: parked connection closed: {}", _error);
    }
}

void bridge::cut(const char* why) {
    if (!_done) {
        _cut_here = true;
    }
    finish(why, true);
}

ms_t bridge::tick(ms_t now) {
    if (_done) {
        return now + 1000;
    }
    if (_again) {
        pump();
        if (_again) {
            return now;
        }
    }
    if (_deadline_ms != 0 && now >= _deadline_ms) {
        if (_plain_connecting) {
            finish(fmt::format("the target {} did not answer in time", _target.str()), true);
        } else {
            proxy_failed(fmt::format("no TLS session with {} in time", _tls.peer().str()));
        }
        if (_done) {
            return now + 1000;
        }
    }
    return _deadline_ms != 0 ? _deadline_ms : now + 1000;
}

} // namespace zt::endpoint
