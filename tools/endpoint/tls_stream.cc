// Outgoing mutual-TLS over a non-blocking socket (see tls_stream.hh).
#include "tools/endpoint/tls_stream.hh"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::endpoint {
namespace {

constexpr uint32_t out_capacity = 64 * 1024;
/// Plaintext per record, and what one record may need in the ciphertext buffer.
constexpr size_t record_plain = 16 * 1024;
constexpr size_t record_room = record_plain + 512;

} // namespace

tls_stream::tls_stream(loop& l, io_handler* owner)
    : _loop(l), _owner(owner), _out_storage(new std::byte[out_capacity]) {
    _out = {_out_storage.get(), out_capacity, 0};
}

bool tls_stream::connect(const net::address& to, params p) {
    close(true); // an earlier attempt's connection, if any
    _p = std::move(p);
    _peer = to;
    _phase = phase::idle;
    _error.clear();
    _cin.clear();
    _out.length = _out_sent = 0;
    _tcp_eof = _notify_received = _shut_queued = _fin_sent = false;
    int err = 0;
    int fd = tcp_connect_nonblocking(to.sa(), to.length, err);
    if (fd < 0) {
        fail(fmt::format("cannot connect to {}: {}", to.str(), std::strerror(err)));
        return false;
    }
    _watch.attach(_loop, fd, _owner);
    _phase = phase::connecting;
    return true;
}

void tls_stream::fail(std::string why) {
    if (_phase != phase::failed) {
        _phase = phase::failed;
        _error = std::move(why);
    }
}

bool tls_stream::start_tls() {
    _out.length = _out_sent = 0;
    if (!_tls.start(*_p.ctx, &_out, _p.sni)) {
        fail("out of memory for TLS");
        return false;
    }
    if (!_p.verify_name.empty() && wolfSSL_check_domain_name(_tls.raw(), _p.verify_name.c_str()) != WOLFSSL_SUCCESS) {
        fail("cannot set the name to verify");
        return false;
    }
    if (!_p.alpn.empty()) {
        std::string list = _p.alpn;
        if (wolfSSL_UseALPN(_tls.raw(), list.data(), static_cast<unsigned>(list.size()),
                            WOLFSSL_ALPN_FAILED_ON_MISMATCH) != WOLFSSL_SUCCESS) {
            fail("cannot offer ALPN");
            return false;
        }
    }
    _phase = phase::handshaking;
    return true;
}

bool tls_stream::recv_some() {
    bool moved = false;
    while (!_tcp_eof && _cin.room() > 0) {
        std::byte* t = _cin.tail();
        ssize_t n = ::recv(_watch.fd(), t, _cin.tail_room(), 0);
        if (n > 0) {
            _cin.commit(size_t(n));
            moved = true;
        } else if (n == 0) {
            _tcp_eof = true;
            moved = true;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            fail(fmt::format("receive from {}: {}", _peer.str(), std::strerror(errno)));
            return true;
        }
    }
    return moved;
}

bool tls_stream::flush() {
    bool moved = false;
    while (_out_sent < _out.length) {
        ssize_t n = ::send(_watch.fd(), _out.data + _out_sent, _out.length - _out_sent, MSG_NOSIGNAL);
        if (n > 0) {
            _out_sent += uint32_t(n);
            moved = true;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else if (n < 0 && errno != EINTR) {
            fail(fmt::format("send to {}: {}", _peer.str(), std::strerror(errno)));
            return true;
        }
    }
    if (_out_sent == _out.length) {
        _out.length = _out_sent = 0;
    }
    return moved;
}

bool tls_stream::progress() {
    bool moved = false;
    if (_phase == phase::connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(_watch.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            fail(fmt::format("cannot connect to {}: {}", _peer.str(), std::strerror(err)));
            return true;
        }
        sockaddr_storage ss{};
        socklen_t sl = sizeof ss;
        if (::getpeername(_watch.fd(), reinterpret_cast<sockaddr*>(&ss), &sl) != 0) {
            return false; // still connecting
        }
        if (!start_tls()) {
            return true;
        }
        moved = true;
    }
    if (_phase != phase::handshaking && _phase != phase::open) {
        return moved;
    }
    moved |= recv_some();
    if (_phase == phase::handshaking) {
        _tls.feed({_cin.data(), _cin.size()});
        tls::status st = _tls.handshake();
        size_t used = _cin.size() - _tls.input_left();
        _cin.consume(used);
        moved |= used > 0 || _out.length > _out_sent;
        if (st == tls::status::done) {
            _phase = phase::open;
            moved = true;
            if (!_p.alpn.empty()) {
                char* proto = nullptr;
                unsigned short plen = 0;
                if (wolfSSL_ALPN_GetProtocol(_tls.raw(), &proto, &plen) != WOLFSSL_SUCCESS ||
                    std::string_view(proto, plen) != _p.alpn) {
                    fail(fmt::format("{} did not accept ALPN {}", _peer.str(), _p.alpn));
                    return true;
                }
            }
        } else if (st == tls::status::failed || st == tls::status::closed) {
            fail(fmt::format("TLS handshake with {} failed: {}", _peer.str(), tls_error()));
            return true;
        } else if (_tcp_eof && _cin.empty()) {
            fail(fmt::format("{} closed the connection during the TLS handshake", _peer.str()));
            return true;
        }
    }
    if (_phase == phase::failed) {
        return true;
    }
    moved |= flush();
    if (_shut_queued && !_fin_sent && _out.length == 0 && _phase != phase::failed) {
        ::shutdown(_watch.fd(), SHUT_WR);
        _fin_sent = true;
        moved = true;
    }
    return moved;
}

size_t tls_stream::read_plain(std::span<std::byte> dst) {
    if (_phase != phase::open || _notify_received || dst.empty()) {
        return 0;
    }
    size_t total = 0;
    while (total < dst.size()) {
        _tls.feed({_cin.data(), _cin.size()});
        size_t n = 0;
        tls::status st = _tls.read(dst.subspan(total), n);
        _cin.consume(_cin.size() - _tls.input_left());
        if (st == tls::status::done) {
            total += n;
            continue;
        }
        if (st == tls::status::closed) {
            _notify_received = true;
        } else if (st == tls::status::failed) {
            fail(fmt::format("TLS from {}: {}", _peer.str(), tls_error()));
        }
        break; // want_read (or want_write: flushed by progress())
    }
    return total;
}

bool tls_stream::can_write() const noexcept {
    return _phase == phase::open && !_shut_queued && out_capacity - (_out.length - _out_sent) >= record_room;
}

size_t tls_stream::write_plain(std::span<const std::byte> src) {
    size_t total = 0;
    while (total < src.size() && can_write()) {
        if (_out_sent > 0) {
            std::memmove(_out.data, _out.data + _out_sent, _out.length - _out_sent);
            _out.length -= _out_sent;
            _out_sent = 0;
        }
        size_t n = 0;
        tls::status st = _tls.write(src.subspan(total, std::min(record_plain, src.size() - total)), n);
        if (st != tls::status::done) {
            fail(fmt::format("TLS to {}: {}", _peer.str(), tls_error()));
            break;
        }
        total += n;
    }
    return total;
}

void tls_stream::shutdown_write() {
    if (_phase == phase::open && !_shut_queued) {
        if (_out_sent > 0) {
            std::memmove(_out.data, _out.data + _out_sent, _out.length - _out_sent);
            _out.length -= _out_sent;
            _out_sent = 0;
        }
        _tls.shutdown();
        _shut_queued = true;
    }
}

std::string tls_stream::tls_error() const {
    if (const char* alert = tls::alert_phrase(_tls.peer_alert())) {
        return fmt::format("{}: {}", _tls.error_string(), alert);
    }
    return _tls.error_string();
}

bool tls_stream::peer_finished() const noexcept {
    return _notify_received || (_tcp_eof && _cin.empty() && _tls.pending() == 0);
}

bool tls_stream::readable() const noexcept {
    return _phase == phase::open && !_notify_received && (!_cin.empty() || _tls.pending() > 0);
}

void tls_stream::update_interest() {
    uint32_t ev = 0;
    if (_phase == phase::connecting) {
        ev = EPOLLOUT;
    } else if (_phase == phase::handshaking || _phase == phase::open) {
        if (!_tcp_eof && _cin.room() > 0) {
            ev |= EPOLLIN | EPOLLRDHUP;
        }
        if (_out_sent < _out.length) {
            ev |= EPOLLOUT;
        }
    }
    _watch.set(ev);
}

void tls_stream::close(bool abort) {
    int fd = _watch.release();
    if (fd >= 0) {
        if (abort) {
            close_abort(fd);
        } else {
            ::close(fd);
        }
    }
    _tls.reset();
    if (_phase != phase::failed) {
        _phase = phase::idle;
    }
}

} // namespace zt::endpoint
