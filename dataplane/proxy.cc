// The TLS proxy/router: after the mTLS handshake and the CN check, the
// destination name comes from the TLS SNI, else from the first plaintext bytes
// (HTTP/1.x Host, or the SNI of an inner ClientHello); name -> zone -> CN
// allowed -> service -> backend (weighted, skipping recently failed ones);
// connect with a timeout; then bytes both ways with bounded buffers and
// backpressure (never read faster than the other side drains), half-closes
// propagated as close_notify/FIN. User-space TLS over io_uring.
#include "common/proto/client_hello.hh"
#include "common/proto/http_host.hh"
#include "dataplane/shard.hh"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zt::dataplane {
namespace {

enum class sniffed : uint8_t { need_more, found, none };

sniffed copy_name(std::string_view n, char (&name)[254], uint8_t& len) noexcept {
    if (n.empty() || n.size() > 253) {
        return sniffed::none;
    }
    std::memcpy(name, n.data(), n.size());
    len = static_cast<uint8_t>(n.size());
    return sniffed::found;
}

/// A name in the first plaintext bytes: an HTTP/1.x Host, or an inner ClientHello's SNI.
sniffed plaintext_name(std::span<const std::byte> bytes, char (&name)[254], uint8_t& len) noexcept {
    char buf[proto::name_buffer_size];
    auto hello = proto::sniff_client_hello(bytes, std::span<char, proto::name_buffer_size>(buf, sizeof buf));
    if (hello.status == proto::tls_status::found && hello.sni.kind == proto::host_kind::dns_name) {
        return copy_name(hello.sni.text, name, len);
    }
    auto http = proto::sniff_http_host(bytes, std::span<char, proto::name_buffer_size>(buf, sizeof buf));
    if (http.status == proto::http_status::found && http.host.kind == proto::host_kind::dns_name) {
        return copy_name(http.host.text, name, len);
    }
    if (hello.status == proto::tls_status::need_more || http.status == proto::http_status::need_more) {
        return sniffed::need_more;
    }
    return sniffed::none;
}

std::string_view format_backend(const sockaddr_in6& a, char (&buf)[64]) noexcept {
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (a.sin6_family == AF_INET) {
        auto* s4 = reinterpret_cast<const sockaddr_in*>(&a);
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        port = ntohs(s4->sin_port);
        auto r = fmt::format_to_n(buf, sizeof buf, "{}:{}", host, port);
        return {buf, std::min(r.size, sizeof buf)};
    }
    inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof host);
    port = ntohs(a.sin6_port);
    auto r = fmt::format_to_n(buf, sizeof buf, "[{}]:{}", host, port);
    return {buf, std::min(r.size, sizeof buf)};
}

} // namespace

void shard::proxy_start(uint32_t i) noexcept {
    conn& c = _conns[i];
    c.tunnel = tunnel_state::sniffing;
    c.deadline_ms = _now_ms + _o.sniff_timeout_ms;
    if (c.tls.alpn() == service_alpn) {
        proxy_park(i);
        return;
    }
    // The SNI wolfSSL parsed and kept (WOLFSSL_ALWAYS_KEEP_SNI), unless it
    // names the proxy itself; an address in SNI names no zone. Else the name
    // comes from the first plaintext bytes.
    char buf[proto::name_buffer_size];
    proto::host_name sni = proto::normalize_host(c.tls.sni(), std::span<char, proto::name_buffer_size>(buf, sizeof buf));
    if (sni.kind == proto::host_kind::dns_name && sni.text != _o.server_name &&
        copy_name(sni.text, c.name, c.name_len) == sniffed::found) {
        proxy_route(i);
        return;
    }
    proxy_from_client(i);
}

void shard::proxy_from_client(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (!ensure_chunk(c)) {
        close_conn(i, "out of connection buffers");
        return;
    }
    c.tls.feed({cin_of(c), c.cin_len});
    bool got = false;
    while (c.c2b_len < c2b_capacity && !c.client_eof) {
        size_t n = 0;
        tls::status st = c.tls.read({c2b_of(c) + c.c2b_len, c2b_capacity - c.c2b_len}, n);
        if (st == tls::status::done) {
            c.c2b_len += uint32_t(n);
            got = true;
            continue;
        }
        if (st == tls::status::closed) {
            c.client_eof = true; // close_notify: the client is done sending
            break;
        }
        if (st == tls::status::want_read) {
            break;
        }
        close_conn(i, c.tls.error_string());
        return;
    }
    uint32_t left = static_cast<uint32_t>(c.tls.input_left());
    // Record boundaries of what wolfSSL took, for a later hand-off to kTLS.
    c.tracker.consume({cin_of(c), c.cin_len - left});
    std::memmove(cin_of(c), cin_of(c) + (c.cin_len - left), left);
    c.cin_len = left;
    if (c.peer_eof && !c.client_eof && c.cin_len == 0 && c.tls.pending() == 0 && c.c2b_len < c2b_capacity) {
        c.client_eof = true; // the client's FIN, and everything before it has been read
    }
    if (c.tunnel == tunnel_state::sniffing) {
        sniffed r = plaintext_name({c2b_of(c), c.c2b_len}, c.name, c.name_len);
        if (r == sniffed::found) {
            proxy_route(i);
        } else if (r == sniffed::none || c.c2b_len == c2b_capacity || c.client_eof) {
            proxy_refuse(i, "no destination name (no SNI, no HTTP Host, no inner SNI)");
            ++_c.proxy_refused_no_name;
        }
        return;
    }
    if (c.tunnel == tunnel_state::parked) {
        if (c.c2b_len > 0 || c.client_eof) {
            close_conn(i, c.client_eof ? "service endpoint left" : "data on a parked connection");
        }
        return;
    }
    if (got) {
        c.deadline_ms = _now_ms + _o.tunnel_idle_timeout_ms;
    }
    if (c.tunnel == tunnel_state::forwarding) {
        proxy_send_backend(i);
    } else if (c.tunnel == tunnel_state::paired) {
        pair_push(i);
    }
}

void shard::proxy_refuse(uint32_t i, std::string_view why) noexcept {
    conn& c = _conns[i];
    _log.info("Proxy: refused {} for {}: {}", c.cn_view(), c.name_len ? c.name_view() : std::string_view("(none)"),
              why);
    close_conn(i, nullptr);
}

void shard::proxy_route(uint32_t i) noexcept {
    conn& c = _conns[i];
    const table::table& t = _reader.current();
    table::name_match m = t.find(c.name_view());
    if (!m.found()) {
        ++_c.proxy_refused_unknown_name;
        proxy_refuse(i, "not a private name");
        return;
    }
    if (c.endpoint == table::none || !t.allows(m.zone, c.endpoint)) {
        ++_c.proxy_refused_not_allowed;
        proxy_refuse(i, "not allowed");
        return;
    }
    uint32_t svc = t.zone_service(m.zone);
    auto sv = t.service(svc);
    if (svc == table::none || sv.backends.empty()) {
        ++_c.proxy_refused_no_route;
        proxy_refuse(i, "the zone has no service");
        return;
    }
    c.service = svc;
    c.service_cn_len = static_cast<uint8_t>(std::min(sv.cn.size(), sizeof c.service_cn));
    std::memcpy(c.service_cn, sv.cn.data(), c.service_cn_len);
    if (sv.flags & table::format::service_via_service_endpoint) {
        // The service dials out to us: take one of its parked connections on
        // this shard, or wait (up to the connect timeout) for one to arrive.
        for (uint32_t j : _parked) {
            if (_conns[j].state == conn_state::open && _conns[j].cn_view() == sv.cn) {
                pair(i, j);
                return;
            }
        }
        c.tunnel = tunnel_state::awaiting;
        c.deadline_ms = _now_ms + (sv.connect_timeout_ms ? sv.connect_timeout_ms : 3000);
        _awaiting.push_back(i);
        return;
    }
    c.tunnel = tunnel_state::connecting;
    proxy_connect(i);
}

void shard::proxy_park(uint32_t i) noexcept {
    conn& c = _conns[i];
    const table::table& t = _reader.current();
    if (c.endpoint == table::none || t.endpoint(c.endpoint).kind != table::format::kind_service) {
        proxy_refuse(i, "only a service certificate may park a connection");
        return;
    }
    if (!ensure_chunk(c)) {
        close_conn(i, "out of connection buffers");
        return;
    }
    c.tunnel = tunnel_state::parked;
    c.deadline_ms = _now_ms + 10 * 60 * 1000; // the endpoint dials a fresh one before this
    // Which shard this is, of how many: the endpoint keeps every shard supplied.
    char line[64];
    auto r = fmt::format_to_n(line, sizeof line, "ZTDNS-PARKED {} {}\n", _index, _o.shard_count);
    size_t n = 0;
    if (c.tls.write(std::as_bytes(std::span(line, r.size)), n) != tls::status::done) {
        close_conn(i, c.tls.error_string());
        return;
    }
    for (size_t k = 0; k < _awaiting.size(); ++k) {
        uint32_t a = _awaiting[k];
        if (_conns[a].state == conn_state::open && _conns[a].tunnel == tunnel_state::awaiting &&
            std::string_view(_conns[a].service_cn, _conns[a].service_cn_len) == c.cn_view()) {
            _awaiting[k] = _awaiting.back();
            _awaiting.pop_back();
            pair_flush(i);
            pair(a, i);
            return;
        }
    }
    _parked.push_back(i);
    pair_flush(i);
}

void shard::pair(uint32_t i, uint32_t j) noexcept {
    conn& a = _conns[i];
    conn& b = _conns[j];
    for (size_t k = 0; k < _parked.size(); ++k) {
        if (_parked[k] == j) {
            _parked[k] = _parked.back();
            _parked.pop_back();
            break;
        }
    }
    if (!ensure_chunk(b)) {
        close_conn(i, "out of connection buffers");
        return;
    }
    a.peer = j;
    b.peer = i;
    a.tunnel = b.tunnel = tunnel_state::paired;
    a.deadline_ms = b.deadline_ms = _now_ms + _o.tunnel_idle_timeout_ms;
    note_tunnel_opened(a);
    _log.info("Proxy: {} → {} (service endpoint) for {}", a.cn_view(), b.cn_view(), a.name_view());
    // The service endpoint learns which name and client this tunnel is for.
    char line[400];
    auto r = fmt::format_to_n(line, sizeof line, "ZTDNS-TUNNEL {} {}\n", a.name_view(), a.cn_view());
    size_t n = 0;
    if (b.tls.write(std::as_bytes(std::span(line, std::min(r.size, sizeof line))), n) != tls::status::done) {
        close_conn(i, b.tls.error_string());
        return;
    }
    pair_flush(j);
    proxy_from_client(i); // what the client sent while routing, then the rest
    arm_recv(i);
    arm_recv(j);
}

void shard::pair_push(uint32_t i) noexcept {
    conn& a = _conns[i];
    if (a.peer == table::none || a.state != conn_state::open) {
        return;
    }
    uint32_t j = a.peer;
    conn& b = _conns[j];
    if (a.c2b_sent < a.c2b_len) {
        uint32_t n = a.c2b_len - a.c2b_sent;
        if (!ensure_chunk(b)) {
            close_conn(i, "out of connection buffers");
            return;
        }
        if (b.out.capacity - b.out.length < n + 256) {
            return; // the peer's send makes room, then pair_flush(j) calls back
        }
        size_t taken = 0;
        if (b.tls.write({c2b_of(a) + a.c2b_sent, n}, taken) != tls::status::done || taken != n) {
            close_conn(i, b.tls.error_string());
            return;
        }
        a.bytes_up += n;
        b.bytes_down += n;
        a.c2b_len = a.c2b_sent = 0;
        a.deadline_ms = b.deadline_ms = _now_ms + _o.tunnel_idle_timeout_ms;
        pair_flush(j);
        if (a.state != conn_state::open) {
            return;
        }
        proxy_from_client(i); // room in c2b again
        arm_recv(i);
        return;
    }
    if (a.client_eof && !b.shut_pending) {
        b.shut_pending = true; // all of a's bytes are in b's TLS: close_notify and FIN follow them
        pair_flush(j);
    }
}

void shard::pair_flush(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (c.state != conn_state::open || c.send_inflight || c.chunk == chunk_pool::none) {
        return;
    }
    if (send_out(i)) {
        return;
    }
    c.out.length = c.out_sent = 0;
    if (c.shut_pending && !c.client_shut) {
        c.tls.shutdown();
        c.client_shut = true;
        if (send_out(i)) {
            return;
        }
    }
    if (c.client_shut) {
        ::shutdown(c.fd, SHUT_WR);
    }
    if (c.peer != table::none) {
        conn& p = _conns[c.peer];
        if (c.client_eof && p.client_eof && c.client_shut && p.client_shut && !p.send_inflight) {
            close_conn(i, nullptr); // both directions are through
            return;
        }
        pair_push(c.peer); // the peer's bytes were waiting for room here
    }
}

void shard::close_backend(conn& c) noexcept {
    if (net::is_direct(c.backend_fd)) {
        _ring->close_direct(c.backend_fd);
    } else if (c.backend_fd >= 0) {
        ::close(c.backend_fd);
    }
    c.backend_fd = -1;
}

bool shard::backend_down(const sockaddr_in6& a) const noexcept {
    uint64_t k = address_key(a);
    const down_entry& e = _down[k % down_capacity];
    return (e.key == k && e.until_ms > _now_ms) || (_shared.health && _shared.health->down(k));
}

void shard::mark_backend_down(const sockaddr_in6& a) noexcept {
    uint64_t k = address_key(a);
    _down[k % down_capacity] = {k, _now_ms + 5000};
}

void shard::proxy_connect(uint32_t i) noexcept {
    conn& c = _conns[i];
    const table::table& t = _reader.current();
    auto sv = t.service(c.service);
    uint32_t tries_allowed = std::min<uint32_t>(3, static_cast<uint32_t>(sv.backends.size()));
    if (sv.backends.empty() || c.attempts >= tries_allowed) {
        ++_c.backend_unreachable;
        proxy_refuse(i, "service unreachable");
        return;
    }
    ++c.attempts;
    // Weighted choice; a backend that failed in the last seconds, or that the
    // active checks marked down, is passed over while another one may be up.
    const table::format::backend* b = nullptr;
    for (uint32_t pick = 0; pick < 2 * sv.backends.size() + 1; ++pick) {
        _rand ^= _rand << 13;
        _rand ^= _rand >> 17;
        _rand ^= _rand << 5;
        const auto* cand = t.pick_backend(c.service, _rand);
        if (!cand) {
            break;
        }
        b = cand;
        c.backend_addr = backend_address(*cand);
        if (!backend_down(c.backend_addr)) {
            break;
        }
    }
    if (!b) {
        ++_c.proxy_refused_no_route;
        proxy_refuse(i, "no backend with weight");
        return;
    }
    char text[64];
    if (c.attempts == 1) {
        _log.info("Proxy: {} → {} ({}) for {}", c.cn_view(), std::string_view(c.service_cn, c.service_cn_len),
                  format_backend(c.backend_addr, text), c.name_view());
    }
    int family = b->family == table::format::family_ipv4 ? AF_INET : AF_INET6;
    c.backend_fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.backend_fd < 0) {
        close_conn(i, "cannot create a socket for the service");
        return;
    }
    net::set_nodelay(c.backend_fd);
    if (_direct) {
        int handle = _ring->make_direct(c.backend_fd, i);
        if (handle < 0) {
            ::close(c.backend_fd);
            c.backend_fd = -1;
            close_conn(i, "cannot register the service socket");
            return;
        }
        c.backend_fd = handle;
    }
    uint32_t ms = sv.connect_timeout_ms ? sv.connect_timeout_ms : 3000;
    c.connect_timeout = {ms / 1000, static_cast<long long>(ms % 1000) * 1'000'000};
    socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    _ring->connect_with_timeout(c.backend_fd, reinterpret_cast<const sockaddr*>(&c.backend_addr), len,
                                tag_of(net::op::connect, i), &c.connect_timeout);
    c.connect_inflight = true;
}

void shard::on_connect(uint32_t i, const net::completion& cq) noexcept {
    conn& c = _conns[i];
    if (i >= _o.max_connections || c.generation != cq.t.generation) {
        return;
    }
    c.connect_inflight = false;
    if (c.state == conn_state::closing) {
        maybe_free(i);
        return;
    }
    char text[64];
    if (cq.res < 0) {
        ++_c.backend_connect_failures;
        mark_backend_down(c.backend_addr);
        _log.warn("Proxy: cannot connect to service {} for {}: {}", format_backend(c.backend_addr, text),
                  c.cn_view(), cq.res == -ECANCELED ? "timed out" : std::strerror(-cq.res));
        close_backend(c);
        proxy_connect(i); // the next backend, or the refusal
        return;
    }
    _log.info("Proxy: Connected to service {}", format_backend(c.backend_addr, text));
    c.tunnel = tunnel_state::forwarding;
    c.deadline_ms = _now_ms + _o.tunnel_idle_timeout_ms;
    note_tunnel_opened(c);
    c.ktls_wanted = _o.ktls && tls::ktls::eligible(c.tls.raw());
    // What was read while routing, and what arrived with the handshake's last
    // flight but is still undecrypted (a client may send its request at once).
    proxy_from_client(i);
    if (c.state != conn_state::open) {
        return;
    }
    proxy_send_backend(i);
    if (c.ktls_wanted) {
        ktls_try(i);
        return;
    }
    proxy_arm_backend_recv(i);
    arm_recv(i);
    maybe_release_chunk(c); // an idle tunnel holds no buffer
}

void shard::proxy_send_backend(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (c.bsend_inflight || c.tunnel != tunnel_state::forwarding || c.state != conn_state::open) {
        return;
    }
    if (c.c2b_sent < c.c2b_len) {
        _ring->send(c.backend_fd, c2b_of(c) + c.c2b_sent, c.c2b_len - c.c2b_sent, tag_of(net::op::backend_send, i));
        c.bsend_inflight = true;
        return;
    }
    c.c2b_len = c.c2b_sent = 0;
    if (c.client_eof && !c.backend_shut) {
        // The client finished sending: the service sees EOF, and may still answer.
        if (net::is_direct(c.backend_fd)) {
            _ring->shutdown(c.backend_fd, SHUT_WR);
        } else {
            ::shutdown(c.backend_fd, SHUT_WR);
        }
        c.backend_shut = true;
        proxy_flush(i);
    }
}

void shard::on_backend_send(uint32_t i, const net::completion& cq) noexcept {
    conn* cp = settle_send(i, cq, &conn::bsend_inflight);
    if (!cp) {
        return;
    }
    conn& c = *cp;
    c.c2b_sent += uint32_t(cq.res);
    c.bytes_up += uint32_t(cq.res);
    if (c.c2b_sent < c.c2b_len) {
        proxy_send_backend(i);
        return;
    }
    c.c2b_len = c.c2b_sent = 0;
    if (c.ktls) {
        ktls_pump(i, true); // what user-space TLS had is through: splice from here on
        return;
    }
    if (c.ktls_wanted) {
        ktls_try(i);
        return;
    }
    // Room again: take more from what TLS holds, then from the socket.
    proxy_from_client(i);
    if (c.state == conn_state::open) {
        proxy_send_backend(i);
        arm_recv(i);
        proxy_flush(i);
    }
}

void shard::proxy_arm_backend_recv(uint32_t i) noexcept {
    conn& c = _conns[i];
    // One service read at a time, and only while out has room for a whole
    // record behind what is being sent: at most two records wait for the
    // client, which must take them before we read more (backpressure).
    if (c.brecv_armed || c.backend_eof || c.ktls || c.ktls_wanted || c.state != conn_state::open ||
        c.tunnel != tunnel_state::forwarding ||
        (c.chunk != chunk_pool::none && c.out.capacity - c.out.length < recv_buffer_size + 256)) {
        return;
    }
    _ring->recv_provided(c.backend_fd, group_service, tag_of(net::op::backend_recv, i));
    c.brecv_armed = true;
}

void shard::on_backend_recv(uint32_t i, const net::completion& cq) noexcept {
    conn& c = _conns[i];
    if (i >= _o.max_connections || c.generation != cq.t.generation) {
        if (cq.has_buffer()) {
            _ring->recycle(group_service, cq.buffer_id());
        }
        return;
    }
    c.brecv_armed = false;
    if (c.state == conn_state::closing) {
        if (cq.has_buffer()) {
            _ring->recycle(group_service, cq.buffer_id());
        }
        maybe_free(i);
        return;
    }
    if (cq.res == -ENOBUFS) {
        starve(i);
        return;
    }
    if (cq.res <= 0) {
        if (cq.has_buffer()) {
            _ring->recycle(group_service, cq.buffer_id());
        }
        if (cq.res < 0) {
            close_conn(i, std::strerror(-cq.res));
            return;
        }
        c.backend_eof = true;
        proxy_flush(i);
        return;
    }
    if (!ensure_chunk(c)) {
        _ring->recycle(group_service, cq.buffer_id());
        close_conn(i, "out of connection buffers");
        return;
    }
    size_t n = 0;
    tls::status st = c.tls.write({_ring->buffer(group_service, cq.buffer_id()), size_t(cq.res)}, n);
    _ring->recycle(group_service, cq.buffer_id());
    if (st != tls::status::done || n != size_t(cq.res)) {
        close_conn(i, st == tls::status::done ? "short TLS write" : c.tls.error_string());
        return;
    }
    c.bytes_down += n;
    c.deadline_ms = _now_ms + _o.tunnel_idle_timeout_ms;
    proxy_flush(i);
    proxy_arm_backend_recv(i); // the next read overlaps this send, if out has room
}

void shard::proxy_flush(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (c.state != conn_state::open) {
        return;
    }
    if (c.tunnel == tunnel_state::paired || c.tunnel == tunnel_state::parked) {
        pair_flush(i);
        return;
    }
    if (c.send_inflight || (c.chunk != chunk_pool::none && send_out(i))) {
        return;
    }
    if (c.chunk != chunk_pool::none) {
        c.out.length = c.out_sent = 0;
    }
    if (c.backend_eof && !c.client_shut && c.tunnel == tunnel_state::forwarding) {
        // The service is done: close_notify, then FIN, to the client.
        if (!ensure_chunk(c)) {
            close_conn(i, "out of connection buffers");
            return;
        }
        c.tls.shutdown();
        c.client_shut = true;
        if (send_out(i)) {
            return;
        }
    }
    if (c.client_shut && c.out.length == 0) {
        ::shutdown(c.fd, SHUT_WR);
    }
    if (c.client_eof && c.backend_eof && c.c2b_len == 0 && !c.bsend_inflight) {
        close_conn(i, nullptr);
        return;
    }
    if (c.ktls_wanted) {
        ktls_try(i);
        return;
    }
    proxy_arm_backend_recv(i);
    maybe_release_chunk(c);
}

bool shard::proxy_still_allowed(const conn& c, const table::table& t) const noexcept {
    table::name_match m = t.find(c.name_view());
    return m.found() && c.endpoint != table::none && t.allows(m.zone, c.endpoint);
}

} // namespace zt::dataplane
