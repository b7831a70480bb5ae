// Plain DNS to the machine's previous resolver (see plain_resolver.hh).
#include "tools/endpoint/plain_resolver.hh"

#include "common/dns/framing.hh"
#include "common/dns/wire.hh"

#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::endpoint {

plain_resolver::plain_resolver(loop& l, net::address server) : _loop(l), _server(server) {
    _udp_side.r = this;
    uint16_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed) {
        seed = uint16_t(monotonic_ms());
    }
    _next_id = seed;
}

plain_resolver::~plain_resolver() = default;

bool plain_resolver::open(std::string& err) {
    int fd = ::socket(_server.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, _server.sa(), _server.length) != 0) {
        err = fmt::format("resolver {}: {}", _server.str(), std::strerror(errno));
        if (fd >= 0) {
            ::close(fd);
        }
        return false;
    }
    _udp.attach(_loop, fd, &_udp_side);
    _udp.set(EPOLLIN);
    return true;
}

void plain_resolver::submit(std::span<const std::byte> query, ms_t deadline, bool over_tcp, callback cb) {
    std::array<char, dns::name_buffer_size> nb{};
    auto q = dns::parse_query(query, std::span<char, dns::name_buffer_size>(nb));
    if (q.error != dns::query_error::none || _requests.size() >= 60000) {
        cb({});
        return;
    }
    uint16_t id = _next_id;
    while (_requests.count(id) || _tcp.count(id)) {
        ++id;
    }
    _next_id = uint16_t(id + 7919); // not sequential: a little harder to guess
    request r;
    r.msg.assign(query.begin(), query.end());
    r.client_id = q.hdr.id;
    r.q_off = size_t(q.question.data() - query.data());
    r.q_len = q.question.size();
    r.deadline = deadline;
    r.cb = std::move(cb);
    dns::set_message_id(r.msg, id);
    if (!over_tcp) {
        ::send(_udp.fd(), r.msg.data(), r.msg.size(), 0); // a lost datagram ends at the deadline
        _requests.emplace(id, std::move(r));
        return;
    }
    auto x = std::make_unique<tcp_exchange>();
    x->r = this;
    x->id = id;
    std::byte prefix[2];
    dns::write_frame_prefix(prefix, r.msg.size());
    x->out.assign(prefix, prefix + 2);
    x->out.insert(x->out.end(), r.msg.begin(), r.msg.end());
    _requests.emplace(id, std::move(r));
    int err = 0;
    int fd = tcp_connect_nonblocking(_server.sa(), _server.length, err);
    if (fd < 0) {
        finish(id, {});
        return;
    }
    x->w.attach(_loop, fd, x.get());
    x->w.set(EPOLLOUT);
    _tcp.emplace(id, std::move(x));
}

void plain_resolver::on_udp() {
    std::array<std::byte, 65535> buf;
    for (int i = 0; i < 64; ++i) {
        ssize_t n = ::recv(_udp.fd(), buf.data(), buf.size(), 0);
        if (n < 0) {
            return;
        }
        auto msg = std::span<const std::byte>(buf.data(), size_t(n));
        auto h = dns::read_header(msg);
        if (!h) {
            continue;
        }
        auto it = _requests.find(h->id);
        if (it == _requests.end() || _tcp.count(h->id)) {
            continue;
        }
        const request& r = it->second;
        auto check = dns::validate_response(msg, h->id, std::span(r.msg).subspan(r.q_off, r.q_len));
        if (check.error != dns::upstream_error::none) {
            continue; // not the answer to our question: keep waiting
        }
        finish(h->id, msg);
    }
}

void plain_resolver::on_tcp(tcp_exchange& x) {
    if (x.done) {
        return;
    }
    int fd = x.w.fd();
    if (x.connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            finish(x.id, {});
            return;
        }
        x.connecting = false;
    }
    while (x.sent < x.out.size()) {
        ssize_t n = ::send(fd, x.out.data() + x.sent, x.out.size() - x.sent, MSG_NOSIGNAL);
        if (n > 0) {
            x.sent += size_t(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            x.w.set(EPOLLOUT);
            return;
        } else {
            finish(x.id, {});
            return;
        }
    }
    for (;;) {
        std::byte* t = x.in.tail();
        ssize_t n = x.in.tail_room() ? ::recv(fd, t, x.in.tail_room(), 0) : 0;
        if (n > 0) {
            x.in.commit(size_t(n));
            auto f = dns::next_frame({x.in.data(), x.in.size()});
            if (f.status == dns::frame_status::complete) {
                auto it = _requests.find(x.id);
                if (it != _requests.end()) {
                    const request& r = it->second;
                    auto check = dns::validate_response(f.message, x.id, std::span(r.msg).subspan(r.q_off, r.q_len));
                    finish(x.id, check.error == dns::upstream_error::none ? f.message : std::span<const std::byte>{});
                }
                return;
            }
            if (f.status == dns::frame_status::empty_frame) {
                finish(x.id, {});
                return;
            }
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            x.w.set(EPOLLIN);
            return;
        } else {
            finish(x.id, {});
            return;
        }
    }
}

void plain_resolver::finish(uint16_t id, std::span<const std::byte> answer) {
    auto it = _requests.find(id);
    if (it == _requests.end()) {
        return;
    }
    request r = std::move(it->second);
    _requests.erase(it);
    if (auto t = _tcp.find(id); t != _tcp.end()) {
        t->second->done = true;
        t->second->w.reset(); // freed at the next tick, after this turn's events
    }
    if (answer.empty()) {
        r.cb({});
        return;
    }
    std::vector<std::byte> copy(answer.begin(), answer.end());
    dns::set_message_id(copy, r.client_id);
    r.cb(copy);
}

ms_t plain_resolver::tick(ms_t now) {
    ms_t next = now + 1000;
    std::vector<uint16_t> expired;
    for (auto& [id, r] : _requests) {
        if (now >= r.deadline) {
            expired.push_back(id);
        } else {
            next = std::min(next, r.deadline);
        }
    }
    for (uint16_t id : expired) {
        finish(id, {});
    }
    std::erase_if(_tcp, [](const auto& kv) { return kv.second->done; });
    return next;
}

} // namespace zt::endpoint
