// Plain DNS to the machine's previous resolver (see plain_resolver.hh).
#include "tools/endpoint/plain_resolver.hh"

#include "common/dns/framing.hh"
#include "common/dns/wire.hh"

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace zt::endpoint {

plain_resolver::plain_resolver(loop& l, net::address server) : _loop(l), _server(server) {}

plain_resolver::~plain_resolver() = default;

bool plain_resolver::open(std::string& err) {
    std::string why;
    int fd = net::connect_udp(_server, why);
    if (fd < 0) {
        err = "resolver: " + why;
        return false;
    }
    ::close(fd);
    return true;
}

uint16_t plain_resolver::fresh_id() const {
    // submit() keeps well under 65,536 in use, so this ends.
    for (;;) {
        auto id = uint16_t(arc4random_uniform(65536));
        if (!_requests.contains(id) && !_exchanges.contains(id)) {
            return id;
        }
    }
}

void plain_resolver::submit(std::span<const std::byte> query, ms_t deadline, bool over_tcp, callback cb) {
    std::array<char, dns::name_buffer_size> nb{};
    auto q = dns::parse_query(query, std::span<char, dns::name_buffer_size>(nb));
    if (q.error != dns::query_error::none || _requests.size() >= max_in_flight) {
        cb({});
        return;
    }
    uint16_t id = fresh_id();
    request r;
    r.msg.assign(query.begin(), query.end());
    r.client_id = q.hdr.id;
    r.q_off = size_t(q.question.data() - query.data());
    r.q_len = q.question.size();
    r.deadline = deadline;
    r.cb = std::move(cb);
    dns::set_message_id(r.msg, id);
    auto x = std::make_unique<exchange>();
    x->r = this;
    x->id = id;
    x->tcp = over_tcp;
    int fd = -1;
    if (!over_tcp) {
        // A fresh ephemeral port, which the kernel picks at random.
        std::string why;
        fd = net::connect_udp(_server, why);
        if (fd >= 0 && ::send(fd, r.msg.data(), r.msg.size(), 0) < 0) {
            ::close(fd);
            fd = -1;
        }
    } else {
        x->out.resize(2 + r.msg.size());
        dns::write_frame_prefix(x->out, r.msg.size());
        std::memcpy(x->out.data() + 2, r.msg.data(), r.msg.size());
        x->in = std::make_unique<byte_buffer>(65540);
        int err = 0;
        fd = tcp_connect_nonblocking(_server.sa(), _server.length, err);
    }
    if (fd < 0) {
        r.cb({});
        return;
    }
    x->w.attach(_loop, fd, x.get());
    x->w.set(over_tcp ? EPOLLOUT : EPOLLIN);
    _requests.emplace(id, std::move(r));
    _exchanges.emplace(id, std::move(x));
}

void plain_resolver::on_udp(exchange& x) {
    if (x.done) {
        return;
    }
    std::array<std::byte, 65535> buf;
    for (int i = 0; i < 16; ++i) {
        ssize_t n = ::recv(x.w.fd(), buf.data(), buf.size(), 0);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                finish(x.id, {}); // e.g. ECONNREFUSED: nothing listens there
            }
            return;
        }
        auto msg = std::span<const std::byte>(buf.data(), size_t(n));
        auto it = _requests.find(x.id);
        if (it == _requests.end()) {
            return;
        }
        const request& r = it->second;
        auto check = dns::validate_response(msg, x.id, std::span(r.msg).subspan(r.q_off, r.q_len));
        if (check.error == dns::upstream_error::none) {
            finish(x.id, msg);
            return;
        }
        // Not the answer to our question (wrong id or question): keep waiting.
    }
}

void plain_resolver::on_tcp(exchange& x) {
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
        std::byte* t = x.in->tail();
        ssize_t n = x.in->tail_room() ? ::recv(fd, t, x.in->tail_room(), 0) : 0;
        if (n > 0) {
            x.in->commit(size_t(n));
            auto f = dns::next_frame({x.in->data(), x.in->size()});
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
    if (auto x = _exchanges.find(id); x != _exchanges.end()) {
        x->second->done = true;
        x->second->w.reset(); // freed at the next tick, after this turn's events
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
    std::erase_if(_exchanges, [](const auto& kv) { return kv.second->done; });
    return next;
}

} // namespace zt::endpoint
