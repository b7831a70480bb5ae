// The local DNS stub (see stub.hh).
#include "tools/endpoint/stub.hh"

#include "common/dns/framing.hh"
#include "common/util/log.hh"
#include "tools/endpoint/names.hh"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace zt::endpoint {
namespace {

constexpr unsigned max_pending_per_tcp = 32;
constexpr ms_t tcp_idle_ms = 10000;
constexpr uint16_t our_udp_max = 4096;

using name_buf = std::array<char, dns::name_buffer_size>;

dns::query parse(std::span<const std::byte> msg, name_buf& nb) {
    return dns::parse_query(msg, std::span<char, dns::name_buffer_size>(nb));
}

} // namespace

stub::stub(loop& l, stub_config cfg, dot_pool& dot, dns_cache& cache, tunnels* tun, plain_resolver* fallback)
    : _loop(l), _cfg(cfg), _dot(dot), _cache(cache), _tun(tun), _fallback(fallback) {
    _udp_side.s = this;
    _tcp_side.s = this;
}

stub::~stub() = default;

bool stub::listen(const net::address& a, std::string& err) {
    int u = ::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u < 0 || ::bind(u, a.sa(), a.length) != 0) {
        err = fmt::format("cannot listen on {} (UDP): {}", a.str(), std::strerror(errno));
        if (u >= 0) {
            ::close(u);
        }
        return false;
    }
    int t = ::socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (t >= 0) {
        ::setsockopt(t, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        set_nodelay(t);
    }
    if (t < 0 || ::bind(t, a.sa(), a.length) != 0 || ::listen(t, 128) != 0) {
        err = fmt::format("cannot listen on {} (TCP): {}", a.str(), std::strerror(errno));
        ::close(u);
        if (t >= 0) {
            ::close(t);
        }
        return false;
    }
    _udp.attach(_loop, u, &_udp_side);
    _udp.set(EPOLLIN);
    _tcp.attach(_loop, t, &_tcp_side);
    _tcp.set(EPOLLIN);
    return true;
}

bool stub::is_private(std::string_view qname) const {
    for (const auto& z : _zones) {
        if (under_zone(qname, z)) {
            return true;
        }
    }
    return false;
}

void stub::on_udp() {
    std::array<std::byte, 65535> buf;
    for (int i = 0; i < 64; ++i) {
        client_ref to;
        to.addr_len = sizeof to.addr;
        ssize_t n =
            ::recvfrom(_udp.fd(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&to.addr), &to.addr_len);
        if (n < 0) {
            return;
        }
        handle({buf.data(), size_t(n)}, to);
    }
}

void stub::on_tcp_accept() {
    for (int i = 0; i < 64; ++i) {
        int fd = ::accept4(_tcp.fd(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        if (_clients.size() >= 256) {
            ::close(fd); // a local stub: this many open DNS connections is a runaway client
            continue;
        }
        set_nodelay(fd);
        auto c = std::make_unique<tcp_client>();
        c->s = this;
        c->id = _next_tcp_id++;
        c->idle_deadline = _loop.now() + tcp_idle_ms;
        c->w.attach(_loop, fd, c.get());
        tcp_client& ref = *c;
        _clients.emplace(c->id, std::move(c));
        on_tcp(ref);
    }
}

void stub::on_tcp(tcp_client& c) {
    if (c.done) {
        return;
    }
    // Flush answers first.
    while (c.out_sent < c.out.size()) {
        ssize_t n = ::send(c.w.fd(), c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
        if (n > 0) {
            c.out_sent += size_t(n);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            c.done = true;
            c.w.reset();
            return;
        }
    }
    if (c.out_sent == c.out.size()) {
        c.out.clear();
        c.out_sent = 0;
    }
    // Then read queries while few are pending.
    while (!c.eof && c.pending < max_pending_per_tcp) {
        auto f = dns::next_frame({c.in.data(), c.in.size()});
        if (f.status == dns::frame_status::empty_frame) {
            c.done = true;
            c.w.reset();
            return;
        }
        if (f.status == dns::frame_status::complete) {
            std::vector<std::byte> q(f.message.begin(), f.message.end());
            c.in.consume(f.consumed);
            c.idle_deadline = _loop.now() + tcp_idle_ms;
            client_ref to;
            to.tcp = true;
            to.tcp_id = c.id;
            ++c.pending;
            handle(q, to); // may answer at once (and append to c.out), or drop the client
            if (c.done) {
                return;
            }
            continue;
        }
        std::byte* t = c.in.tail();
        ssize_t n = c.in.tail_room() ? ::recv(c.w.fd(), t, c.in.tail_room(), 0) : -1;
        if (n > 0) {
            c.in.commit(size_t(n));
        } else if (n == 0) {
            c.eof = true;
        } else {
            break;
        }
    }
    if (c.out_sent < c.out.size()) {
        // Answers appended by handle(): try to send them now.
        ssize_t n = ::send(c.w.fd(), c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
        if (n > 0) {
            c.out_sent += size_t(n);
        }
        if (c.out_sent == c.out.size()) {
            c.out.clear();
            c.out_sent = 0;
        }
    }
    tcp_update(c);
}

void stub::tcp_update(tcp_client& c) {
    if (c.done) {
        return;
    }
    if (c.eof && c.pending == 0 && c.out.empty()) {
        c.done = true;
        c.w.reset();
        return;
    }
    uint32_t ev = 0;
    if (!c.eof && c.pending < max_pending_per_tcp) {
        ev |= EPOLLIN | EPOLLRDHUP;
    }
    if (!c.out.empty()) {
        ev |= EPOLLOUT;
    }
    c.w.set(ev);
}

void stub::handle(std::span<const std::byte> msg, const client_ref& to) {
    name_buf nb{};
    auto q = parse(msg, nb);
    std::array<std::byte, 1024> small;
    switch (dns::reply_for(q.error)) {
    case dns::reply_action::drop:
        if (to.tcp) {
            // A TCP client that sent garbage: drop the connection (framing can no longer be trusted).
            if (auto it = _clients.find(to.tcp_id); it != _clients.end()) {
                it->second->done = true;
                it->second->w.reset();
            }
        }
        return;
    case dns::reply_action::formerr:
    case dns::reply_action::notimp: {
        auto code = dns::reply_for(q.error) == dns::reply_action::formerr ? dns::rcode::formerr : dns::rcode::notimp;
        auto r = dns::build_header_response(msg, code, small);
        reply(to, msg, std::span(small).first(r.size));
        return;
    }
    case dns::reply_action::badvers:
    case dns::reply_action::answer:
        break;
    }
    const std::string qname(q.qname);
    // Tunnels: the name's local address.
    if (_tun && q.qname_exact && q.qclass == dns::class_in && q.error == dns::query_error::none) {
        if (auto addr = _tun->address_for(qname)) {
            std::array<uint8_t, 4> a{uint8_t(*addr >> 24), uint8_t(*addr >> 16), uint8_t(*addr >> 8), uint8_t(*addr)};
            dns::response_spec spec;
            spec.aa = true;
            spec.ra = true;
            spec.ttl = _cfg.tunnel_ttl;
            if (q.qtype == dns::rr_type::a) {
                spec.a = std::span(&a, 1);
            }
            std::array<std::byte, 2048> out;
            auto r = dns::build_response(q, spec, out);
            if (r.error == dns::build_error::none) {
                reply(to, msg, std::span(out).first(r.size));
                return;
            }
        }
    }
    const ms_t deadline = _loop.now() + _cfg.query_timeout_ms;
    std::vector<std::byte> query(msg.begin(), msg.end());
    // --split: names outside the private zones go to the previous resolver, untouched and uncached.
    if (_cfg.split && _fallback && !(q.qname_exact && is_private(qname))) {
        client_ref who = to;
        _fallback->submit(msg, deadline, to.tcp, [this, who, query = std::move(query)](std::span<const std::byte> a) {
            if (a.empty()) {
                reply_servfail(who, query);
            } else {
                reply(who, query, a);
            }
        });
        return;
    }
    std::string key = dns_cache::key_of(q);
    std::array<std::byte, dns::max_message_size> out;
    if (auto n = _cache.lookup(key, _loop.now(), q.hdr.id, out)) {
        reply(to, msg, std::span(out).first(*n));
        return;
    }
    client_ref who = to;
    _dot.submit(msg, deadline,
                [this, who, key = std::move(key), query = std::move(query)](std::span<const std::byte> a) {
                    if (a.empty()) {
                        reply_servfail(who, query);
                        return;
                    }
                    _cache.insert(key, a, _loop.now());
                    reply(who, query, a);
                });
}

void stub::reply_servfail(const client_ref& to, std::span<const std::byte> query) {
    name_buf nb{};
    auto q = parse(query, nb);
    std::array<std::byte, 1024> out;
    dns::response_spec spec;
    spec.code = dns::rcode::servfail;
    spec.aa = false;
    spec.ra = true;
    auto r = dns::build_response(q, spec, out);
    if (r.error != dns::build_error::none) {
        r = dns::build_header_response(query, dns::rcode::servfail, out);
    }
    reply(to, query, std::span(out).first(r.size));
}

void stub::reply(const client_ref& to, std::span<const std::byte> query, std::span<const std::byte> answer) {
    if (answer.empty()) {
        return;
    }
    if (!to.tcp) {
        name_buf nb{};
        auto q = parse(query, nb);
        size_t limit = q.error == dns::query_error::none || q.error == dns::query_error::bad_edns_version
                           ? dns::max_udp_response_size(q, our_udp_max)
                           : dns::classic_udp_size;
        std::array<std::byte, 1024> small;
        if (answer.size() > limit) {
            size_t n = build_truncated(q, answer, small);
            if (n == 0) {
                return;
            }
            answer = std::span(small).first(n);
        }
        ::sendto(_udp.fd(), answer.data(), answer.size(), 0, reinterpret_cast<const sockaddr*>(&to.addr), to.addr_len);
        return;
    }
    auto it = _clients.find(to.tcp_id);
    if (it == _clients.end() || it->second->done) {
        return; // the client went away
    }
    tcp_client& c = *it->second;
    if (c.pending > 0) {
        --c.pending;
    }
    std::byte prefix[2];
    dns::write_frame_prefix(prefix, answer.size());
    c.out.insert(c.out.end(), prefix, prefix + 2);
    c.out.insert(c.out.end(), answer.begin(), answer.end());
    tcp_update(c);
}

ms_t stub::tick(ms_t now) {
    ms_t next = now + 1000;
    for (auto& [id, c] : _clients) {
        if (!c->done && c->pending == 0 && c->out.empty() && now >= c->idle_deadline) {
            c->done = true;
            c->w.reset();
        }
        if (!c->done) {
            next = std::min(next, c->idle_deadline);
        }
    }
    std::erase_if(_clients, [](const auto& kv) { return kv.second->done; });
    return next;
}

} // namespace zt::endpoint
