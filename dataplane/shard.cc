// The shard loop, connection lifecycle and the DoT service (RFC 7858 framing
// per RFC 7766): mTLS handshake, CN check against the route table, private
// answers, upstream forwarding with a cache. Completion-driven; every
// connection's outstanding operations are counted, and a slot is reused only
// after its last completion (close = cancel, drain, then free).
#include "dataplane/shard.hh"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace zt::dataplane {
namespace {

uint64_t monotonic_us() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000 + uint64_t(ts.tv_nsec) / 1000;
}

uint16_t be16(const std::byte* p) noexcept { return uint16_t(uint16_t(p[0]) << 8 | uint16_t(p[1])); }

/// Text of an address for log lines, into a caller buffer.
std::string_view format_addr(const uint8_t* addr, bool v6, char (&buf)[INET6_ADDRSTRLEN]) noexcept {
    if (!inet_ntop(v6 ? AF_INET6 : AF_INET, addr, buf, sizeof buf)) {
        return "?";
    }
    return buf;
}

} // namespace

shard::shard(uint32_t index, const shard_options& o, shard_shared& shared, table::holder::reader&& reader,
             shard_counters& counters)
    : _index(index), _o(o), _shared(shared), _reader(std::move(reader)), _c(counters) {}

shard::~shard() {
    for (int fd : _listeners) {
        ::close(fd);
    }
    for (int fd : _upstream_fds) {
        ::close(fd);
    }
    if (_conns) {
        for (uint32_t i = 0; i < _o.max_connections; ++i) {
            if (_conns[i].fd >= 0) {
                ::close(_conns[i].fd);
            }
        }
    }
    if (_wake_fd >= 0) {
        ::close(_wake_fd);
    }
}

bool shard::init(std::string& err) {
    _ring = net::ring::create(4096, err);
    if (!_ring) {
        return false;
    }
    _ring->set_busy_poll(_o.busy_poll_us);
    if (!_ring->add_buffer_group(group_tcp, client_recv_buffers, recv_buffer_size, err) ||
        !_ring->add_buffer_group(group_service, service_recv_buffers, recv_buffer_size, err) ||
        !_ring->add_buffer_group(group_udp, 512, 4096, err)) {
        return false;
    }
    // Service-side sockets live in the ring's file table, one slot per
    // connection, so a tunnel costs one entry of the process's fd table, not
    // two. The kernel TLS path splices with plain syscalls and keeps real fds.
    _o.max_connections = std::min(_o.max_connections, _o.fd_budget);
    if (!_o.proxy_listen.empty() && !_o.ktls) {
        std::string why;
        _direct = _ring->enable_direct(_o.max_connections, why);
        if (!_direct) {
            _log.warn("Proxy: service sockets use the process's fd table ({})", why);
        }
    }
    if (!_o.proxy_listen.empty() && !_direct) {
        _o.max_connections = std::max(1u, std::min(_o.max_connections, _o.fd_budget / (_o.ktls ? 4 : 2)));
    }
    for (const auto& a : _o.dot_listen) {
        int fd = net::listen_tcp(a, 4096, err);
        if (fd < 0) {
            return false;
        }
        _listeners.push_back(fd);
    }
    _dot_listeners = static_cast<uint32_t>(_listeners.size());
    for (const auto& a : _o.proxy_listen) {
        int fd = net::listen_tcp(a, 4096, err);
        if (fd < 0) {
            return false;
        }
        _listeners.push_back(fd);
    }
    _conns.reset(new conn[_o.max_connections]);
    _free_conns.reserve(_o.max_connections);
    _live.reserve(_o.max_connections);
    _starved.reserve(_o.max_connections);
    for (uint32_t i = _o.max_connections; i-- > 0;) {
        _free_conns.push_back(i);
    }
    if (!_chunks.init(std::min(_o.buffer_chunks, _o.max_connections), chunk_size) ||
        !_stages.init(std::min(_o.buffer_chunks, _o.max_connections), stage_capacity)) {
        err = "cannot map connection buffers";
        return false;
    }
    if (!_cache.init(_o.cache_entries)) {
        err = "cannot map the DNS cache";
        return false;
    }
    _pending.reset(new pending[pending_capacity]);
    _pending_slots.reset(new uint16_t[pending_capacity]);
    for (uint32_t i = 0; i < pending_capacity; ++i) {
        _pending_slots[i] = static_cast<uint16_t>(i);
        _pending[i].at = static_cast<uint16_t>(i);
    }
    _inflight.reset(new uint16_t[inflight_capacity]);
    std::fill_n(_inflight.get(), inflight_capacity, inflight_empty);
    _waiters.reset(new waiter[waiter_capacity]);
    _free_waiters.reserve(waiter_capacity);
    for (uint32_t i = waiter_capacity; i-- > 0;) {
        _free_waiters.push_back(i);
    }
    _accept_paused.reserve(_listeners.size());
    _resume.reserve(waiter_capacity + 1); // one per waiter and the first asker: never grows
    _slot_of_id.reset(new uint16_t[65536]);
    std::fill_n(_slot_of_id.get(), 65536, inflight_empty);
    if (::getrandom(&_random_state, sizeof _random_state, 0) != sizeof _random_state) {
        err = std::string("getrandom: ") + std::strerror(errno);
        return false;
    }
    for (const auto& u : _o.upstreams) {
        for (uint32_t k = 0; k < upstream_sockets; ++k) {
            std::string why;
            int fd = net::connect_udp(u, why);
            if (fd < 0) {
                err = "upstream: " + why;
                return false;
            }
            _upstream_fds.push_back(fd);
        }
    }
    _wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    _scratch.reset(new std::byte[dns::max_message_size]);
    _padded.reset(new std::byte[dns::max_message_size]);
    _pipes.reserve(pipe_pool_cap); // the pipe cache never grows on the data path
    return _wake_fd >= 0;
}

void shard::wake() noexcept {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t w = ::write(_wake_fd, &one, sizeof one);
}

void shard::run() noexcept {
    for (uint32_t l = 0; l < _listeners.size(); ++l) {
        _ring->accept_multishot(_listeners[l], {net::op::accept, 0, l});
    }
    for (uint32_t u = 0; u < _upstream_fds.size(); ++u) {
        _ring->recv_multishot(_upstream_fds[u], group_udp, {net::op::upstream, 0, u});
    }
    _ring->timeout(&_tick, {net::op::timeout, 0, 0});
    _ring->read_eventfd(_wake_fd, &_wake_buf, {net::op::wake, 0, 0});
    _now_us = monotonic_us();
    _now_ms = _now_us / 1000;
    if (_reader.refresh()) {
        on_table_switch();
    }
    for (;;) {
        _ring->wait(100, [this](const net::completion& c) {
            // One catch per completion: a stray exception closes what it was for, never the shard.
            try {
                on_completion(c);
            } catch (...) {
                ++_c.bugs;
                if (c.t.kind == net::op::recv || c.t.kind == net::op::send) {
                    close_conn(c.t.index, "internal error");
                }
            }
        });
        _queued_since_us = 0;
        rearm_starved();
        _now_us = monotonic_us();
        _now_ms = _now_us / 1000;
        if (_reader.refresh()) {
            on_table_switch();
        }
        if (_shared.stop.load(std::memory_order_relaxed) && !_stopping) {
            _stopping = true;
            _stop_deadline_ms = _now_ms + _shared.drain_ms;
            for (int fd : _listeners) {
                ::close(fd);
            }
            _listeners.clear();
            // Idle connections go now; busy ones finish their answers first.
            for_each_live([this](uint32_t i, conn& c) {
                if (c.state != conn_state::closing && c.pending_upstream == 0 && c.stage_len == 0 &&
                    !c.send_inflight) {
                    close_conn(i, "shutting down");
                }
            });
        }
        _log.flush();
        if (_stopping && (_open == 0 || _now_ms >= _stop_deadline_ms)) {
            break;
        }
    }
    _log.flush();
}

void shard::starve(uint32_t i) noexcept {
    ++_c.recv_no_buffer;
    if (!_conns[i].starved) {
        _conns[i].starved = true;
        _starved.push_back(i);
    }
}

void shard::rearm_starved() noexcept {
    for (uint32_t i : _starved) {
        conn& c = _conns[i];
        c.starved = false;
        if (c.state == conn_state::free || c.state == conn_state::closing) {
            continue;
        }
        arm_recv(i);
        if (c.kind == conn_kind::proxy) {
            proxy_arm_backend_recv(i);
        }
    }
    _starved.clear();
}

void shard::note_tunnel_traffic(const net::completion& cq, bool from_client) noexcept {
    // DoT answers leave at once and the next query comes whenever the client
    // sends it: no polling for those.
    uint32_t i = cq.t.index;
    if (i >= _o.max_connections || _conns[i].generation != cq.t.generation || _conns[i].kind != conn_kind::proxy ||
        _conns[i].tunnel == tunnel_state::sniffing) {
        return;
    }
    conn& c = _conns[i];
    if (from_client) {
        if (cq.res > 0 && c.client_wait_from_us) {
            uint64_t took = _now_us - c.client_wait_from_us;
            uint32_t sample = static_cast<uint32_t>(std::min<uint64_t>(took, 1'000'000));
            c.client_reply_us = c.client_reply_us == unknown_reply ? sample : (3 * c.client_reply_us + sample) / 4;
            c.client_wait_from_us = 0;
        }
        _ring->poll_next_wait(); // what came is on its way to the service, whose answer comes soon
        return;
    }
    // Sent to the client: its answer comes as fast as it answered before. A
    // client across a real network takes milliseconds, and one busy with
    // its own work (a load generator's saturated core) more than the window:
    // sleeping costs less than polling for those. The measure includes our
    // wake-up when we slept (tens of microseconds in a VM), so the bar is
    // twice the polling window.
    if (!c.client_wait_from_us) {
        c.client_wait_from_us = _now_us;
    }
    if (c.client_reply_us < 2 * _o.busy_poll_us) {
        _ring->poll_next_wait();
    }
}

void shard::on_completion(const net::completion& c) noexcept {
    switch (c.t.kind) {
    case net::op::accept:
        on_accept(c);
        return;
    case net::op::recv:
        note_tunnel_traffic(c, true);
        on_recv(c.t.index, c);
        return;
    case net::op::send:
        note_tunnel_traffic(c, false);
        on_send(c.t.index, c);
        return;
    case net::op::upstream:
        on_upstream(c);
        return;
    case net::op::connect:
        on_connect(c.t.index, c);
        return;
    case net::op::backend_recv:
        _ring->poll_next_wait();
        on_backend_recv(c.t.index, c);
        return;
    case net::op::backend_send:
        _ring->poll_next_wait();
        on_backend_send(c.t.index, c);
        return;
    case net::op::upstream_tcp:
        on_upstream_tcp(c);
        return;
    case net::op::poll_up:
        on_ktls_poll(c.t.index, true, c);
        return;
    case net::op::poll_down:
        on_ktls_poll(c.t.index, false, c);
        return;
    case net::op::timeout:
        on_tick();
        return;
    case net::op::wake:
        _ring->read_eventfd(_wake_fd, &_wake_buf, {net::op::wake, 0, 0});
        return;
    default:
        return; // cancel, close, link timeouts, fire-and-forget sends
    }
}

void shard::on_accept(const net::completion& c) noexcept {
    bool full = c.res == -EMFILE || c.res == -ENFILE;
    if (!c.more() && !_stopping && c.t.index < _listeners.size()) {
        if (full) {
            ++_c.accept_fd_table_full;
            _accept_paused.push_back(c.t.index);
            if (once_a_second(_fd_full_logged_ms)) {
                _log.warn("{}: the fd table is full ({} connections open): not accepting until the next tick",
                          c.t.index < _dot_listeners ? "DNS" : "Proxy", _open);
            }
        } else {
            _ring->accept_multishot(_listeners[c.t.index], {net::op::accept, 0, c.t.index});
        }
    }
    if (c.res < 0) {
        return;
    }
    int fd = c.res;
    if (_stopping || _free_conns.empty()) {
        ++_c.connections_refused_full;
        ::close(fd);
        if (!_stopping && once_a_second(_slots_full_logged_ms)) {
            _log.warn("{}: refused a connection: all {} connection slots of shard {} are in use "
                      "(limits.max_connections_per_shard, or the fd limit)",
                      c.t.index < _dot_listeners ? "DNS" : "Proxy", _o.max_connections, _index);
        }
        return;
    }
    uint32_t i = _free_conns.back();
    _free_conns.pop_back();
    conn& k = _conns[i];
    k.live_pos = static_cast<uint32_t>(_live.size());
    _live.push_back(i);
    k.fd = fd;
    k.kind = c.t.index < _dot_listeners ? conn_kind::dot : conn_kind::proxy;
    k.state = conn_state::handshake;
    k.deadline_ms = _now_ms + _o.handshake_timeout_ms;
    k.opened_ms = _now_ms;
    ++_open;
    ++_c.connections_accepted;
    _c.connections_active = _open;
    net::set_nodelay(fd);
    if (!ensure_chunk(k) || !k.tls.start(*_shared.server_tls.load(std::memory_order_acquire), &k.out)) {
        ++_c.connections_refused_full;
        close_conn(i, "no buffer for a new connection");
        return;
    }
    if (k.kind == conn_kind::proxy) {
        k.tls.set_alpn(service_alpn); // service endpoints ask for it; everyone else goes on without ALPN
    }
    arm_recv(i);
}

bool shard::ensure_chunk(conn& c) noexcept {
    if (c.chunk != chunk_pool::none) {
        return true;
    }
    c.chunk = _chunks.acquire();
    if (c.chunk == chunk_pool::none) {
        return false;
    }
    c.out.data = _chunks.at(c.chunk);
    c.out.capacity = out_capacity;
    c.out.length = 0;
    c.out_sent = 0;
    return true;
}

void shard::maybe_release_chunk(conn& c) noexcept {
    if (c.stage != chunk_pool::none && c.stage_len == 0) {
        _stages.release(c.stage);
        c.stage = chunk_pool::none;
    }
    // An idle connection holds no buffer: only its slot and wolfSSL's state.
    if (c.chunk != chunk_pool::none && c.state == conn_state::open && !c.send_inflight && c.out.length == 0 &&
        c.stage_len == 0 && c.cin_len == 0 && c.rx_len == 0 && !c.paused && c.c2b_len == 0 && !c.bsend_inflight &&
        (c.kind == conn_kind::dot || c.tunnel == tunnel_state::forwarding || c.tunnel == tunnel_state::paired ||
         c.tunnel == tunnel_state::parked)) {
        _chunks.release(c.chunk);
        c.chunk = chunk_pool::none;
        c.out = {};
    }
}

void shard::arm_recv(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (c.recv_armed || c.paused || c.peer_eof || c.client_eof || c.ktls || c.ktls_wanted ||
        c.state == conn_state::closing || c.state == conn_state::free) {
        return;
    }
    if (c.chunk != chunk_pool::none && cin_capacity - c.cin_len < recv_buffer_size) {
        return; // resumes when TLS has taken what we hold
    }
    _ring->recv_provided(c.fd, group_tcp, tag_of(net::op::recv, i));
    c.recv_armed = true;
}

void shard::on_recv(uint32_t i, const net::completion& cq) noexcept {
    conn& c = _conns[i];
    if (i >= _o.max_connections || c.generation != cq.t.generation) {
        if (cq.has_buffer()) {
            _ring->recycle(group_tcp, cq.buffer_id());
        }
        return;
    }
    c.recv_armed = false;
    if (c.state == conn_state::closing) {
        if (cq.has_buffer()) {
            _ring->recycle(group_tcp, cq.buffer_id());
        }
        maybe_free(i);
        return;
    }
    if (c.recv_cancelling) {
        c.recv_cancelling = false;
        if (cq.res == -ECANCELED || cq.res == -ENOBUFS) {
            ktls_try(i);
            return;
        }
    }
    if (c.exact_recv) {
        // The bytes that complete a partial record before kTLS takes over.
        c.exact_recv = false;
        if (cq.res <= 0) {
            close_conn(i, cq.res == 0 ? "client closed before kernel TLS" : std::strerror(-cq.res));
            return;
        }
        c.cin_len += uint32_t(cq.res);
        proxy_from_client(i);
        ktls_try(i);
        return;
    }
    if (cq.res == -ENOBUFS) {
        starve(i);
        return;
    }
    if (cq.res <= 0) {
        if (cq.has_buffer()) {
            _ring->recycle(group_tcp, cq.buffer_id());
        }
        if (c.kind == conn_kind::proxy && cq.res == 0 && c.state == conn_state::open &&
            (c.tunnel == tunnel_state::forwarding || c.tunnel == tunnel_state::paired ||
             c.tunnel == tunnel_state::connecting || c.tunnel == tunnel_state::awaiting)) {
            // FIN without close_notify: once what we hold is through, the
            // same half-close for the service.
            c.peer_eof = true;
            proxy_from_client(i);
            if (c.state == conn_state::open) {
                proxy_flush(i);
            }
            return;
        }
        c.peer_eof = true;
        if (cq.res < 0 || c.state == conn_state::handshake || c.kind == conn_kind::proxy) {
            close_conn(i, cq.res == 0 ? "closed by the client during the handshake" : std::strerror(-cq.res));
        } else {
            flush(i); // answers still owed go out, then the connection closes
        }
        return;
    }
    if (!ensure_chunk(c)) {
        _ring->recycle(group_tcp, cq.buffer_id());
        ++_c.connections_refused_full;
        close_conn(i, "out of connection buffers");
        return;
    }
    // Copy into the connection (at most one receive buffer fits by arm_recv's
    // rule) and give the buffer back at once: TLS may take it piecemeal.
    std::memcpy(cin_of(c) + c.cin_len, _ring->buffer(group_tcp, cq.buffer_id()), size_t(cq.res));
    c.cin_len += uint32_t(cq.res);
    _ring->recycle(group_tcp, cq.buffer_id());
    advance(i);
    if (c.ktls_wanted) {
        ktls_try(i);
        return;
    }
    arm_recv(i);
}

void shard::advance(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (c.state == conn_state::handshake) {
        submit_if_turn_long(); // marks the start of this turn's wait
        c.tls.feed({cin_of(c), c.cin_len});
        tls::status st = c.tls.handshake();
        uint32_t left = static_cast<uint32_t>(c.tls.input_left());
        std::memmove(cin_of(c), cin_of(c) + (c.cin_len - left), left);
        c.cin_len = left;
        if (st == tls::status::failed) {
            ++_c.handshake_failures;
            _log.info("{}: handshake failed: {}", c.kind == conn_kind::proxy ? "Proxy" : "DNS", c.tls.error_string());
            flush(i); // the alert wolfSSL wrote, if any
            close_conn(i, nullptr);
            return;
        }
        // The CN is checked before what the handshake's last step wrote goes
        // out (TLS 1.2: the server's Finished): a refusal's alert joins it in
        // one send instead of queueing behind a send in flight.
        if (st == tls::status::done && !authenticate(i)) {
            return;
        }
        flush(i);
        submit_if_turn_long();
        if (st != tls::status::done) {
            return;
        }
        if (c.kind == conn_kind::proxy) {
            proxy_start(i);
            return;
        }
    }
    if (c.state == conn_state::open) {
        if (c.kind == conn_kind::proxy) {
            proxy_from_client(i);
        } else {
            read_queries(i);
        }
    }
}

void shard::submit_if_turn_long() noexcept {
    uint64_t now = monotonic_us();
    if (_queued_since_us == 0) {
        _queued_since_us = now;
    } else if (now - _queued_since_us >= early_submit_us) {
        _ring->submit();
        _queued_since_us = now;
    }
}

bool shard::authenticate(uint32_t i) noexcept {
    conn& c = _conns[i];
    auto cn = c.tls.peer_cn();
    std::memcpy(c.cn, cn.data(), cn.size());
    c.cn_len = static_cast<uint8_t>(cn.size());
    const table::table& t = _reader.current();
    uint32_t ep = cn.empty() ? table::none : t.find_endpoint(cn);
    const char* who = c.kind == conn_kind::proxy ? "Proxy" : "DNS";
    if (ep == table::none) {
        ++_c.auth_unknown_cn;
        _log.info("{}: refused {}: unknown certificate CN", who, cn.empty() ? "(no CN)" : cn);
        refuse(i, tls::refusal::access_denied);
        return false;
    }
    auto e = t.endpoint(ep);
    if (e.revoked) {
        ++_c.auth_revoked_cn;
        _log.info("{}: refused {}: revoked", who, cn);
        refuse(i, tls::refusal::revoked);
        return false;
    }
    if (ep < _per_endpoint.size()) {
        if (_per_endpoint[ep] >= _o.max_connections_per_cn) {
            ++_c.connections_refused_per_cn;
            _log.info("{}: refused {}: over {} connections", who, cn, _o.max_connections_per_cn);
            refuse(i, tls::refusal::access_denied);
            return false;
        }
        ++_per_endpoint[ep];
    }
    c.endpoint = ep;
    c.state = conn_state::open;
    c.deadline_ms = _now_ms + _o.idle_timeout_ms;
    ++_c.handshakes;
    return true;
}

void shard::refuse(uint32_t i, tls::refusal alert, const char* why) noexcept {
    // The client's certificate verified, so it holds the key: it may learn
    // why it is refused (curl and openssl print the alert). The alert goes
    // out before the close, as a failed handshake's does; answers staged for
    // it before it was refused do not. Best effort: behind a send still in
    // flight (a busy DoT connection revoked in place) it is not sent, and the
    // close is bare as before.
    conn& c = _conns[i];
    c.stage_off = c.stage_len = 0;
    if (ensure_chunk(c)) { // an idle connection holds no output buffer
        c.tls.refuse(alert);
        send_out(i);
    }
    close_conn(i, why);
}

void shard::read_queries(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (!ensure_chunk(c)) {
        close_conn(i, "out of connection buffers");
        return;
    }
    c.tls.feed({cin_of(c), c.cin_len});
    for (;;) {
        if (c.state != conn_state::open) {
            break;
        }
        // Room for the largest answer we stage synchronously, and a bound on
        // answers still to come from upstream; else wait (backpressure).
        if (c.pending_upstream >= max_upstream_per_conn) {
            c.paused = true;
            break;
        }
        if (c.stage_len - c.stage_off + 4096 + 2 > stage_capacity) {
            flush(i);
            if (c.stage_len - c.stage_off + 4096 + 2 > stage_capacity) {
                c.paused = true;
                break;
            }
        }
        uint32_t need = c.rx_len < 2 ? 2 - c.rx_len : 2u + be16(rx_of(c)) - c.rx_len;
        size_t n = 0;
        tls::status st = c.tls.read({rx_of(c) + c.rx_len, need}, n);
        if (st == tls::status::want_read) {
            break;
        }
        if (st == tls::status::closed) {
            c.peer_eof = true;
            break;
        }
        if (st != tls::status::done) {
            close_conn(i, c.tls.error_string());
            return;
        }
        c.rx_len += uint32_t(n);
        if (c.rx_len < 2) {
            continue;
        }
        uint16_t len = be16(rx_of(c));
        if (len == 0 || len > rx_capacity - 2) {
            ++_c.queries_malformed;
            close_conn(i, len == 0 ? "empty DoT frame" : "query over 4 KiB");
            return;
        }
        if (c.rx_len < 2u + len) {
            continue;
        }
        c.rx_len = 0;
        c.deadline_ms = _now_ms + _o.idle_timeout_ms;
        handle_query(i, {rx_of(c) + 2, len});
        if (++c.queries >= _o.max_queries_per_connection) {
            c.peer_eof = true; // answer what was asked, then close
            break;
        }
    }
    uint32_t left = static_cast<uint32_t>(c.tls.input_left());
    if (c.chunk != chunk_pool::none) {
        std::memmove(cin_of(c), cin_of(c) + (c.cin_len - left), left);
        c.cin_len = left;
    }
    flush(i);
}

bool shard::stage_answer(conn& c, std::span<const std::byte> msg) noexcept {
    if (c.stage == chunk_pool::none) {
        c.stage = _stages.acquire();
        if (c.stage == chunk_pool::none) {
            return false;
        }
        c.stage_off = c.stage_len = 0;
    }
    if (stage_capacity - c.stage_len < msg.size() + 2 && c.stage_off > 0) {
        std::memmove(stage_of(c), stage_of(c) + c.stage_off, c.stage_len - c.stage_off);
        c.stage_len -= c.stage_off;
        c.stage_off = 0;
    }
    if (stage_capacity - c.stage_len < msg.size() + 2) {
        return false;
    }
    std::byte* p = stage_of(c) + c.stage_len;
    p[0] = std::byte(msg.size() >> 8);
    p[1] = std::byte(msg.size());
    std::memcpy(p + 2, msg.data(), msg.size());
    c.stage_len += uint32_t(msg.size() + 2);
    return true;
}

void shard::count_rcode(std::span<const std::byte> msg) noexcept {
    auto h = dns::read_header(msg);
    switch (h ? h->rcode_low() : 255) {
    case 0:
        ++_c.rcode_noerror;
        break;
    case 1:
        ++_c.rcode_formerr;
        break;
    case 2:
        ++_c.rcode_servfail;
        break;
    case 3:
        ++_c.rcode_nxdomain;
        break;
    default:
        ++_c.rcode_other;
    }
}

uint32_t shard::visible_parent_zone(const table::table& t, uint32_t zone, uint32_t endpoint) noexcept {
    if (endpoint == table::none) {
        return table::none;
    }
    for (;;) {
        std::string_view name = t.zone_name(zone);
        size_t dot = name.find('.');
        if (dot == std::string_view::npos) {
            return table::none;
        }
        table::name_match up = t.find(name.substr(dot + 1));
        if (!up.found()) {
            return table::none;
        }
        if (t.allows(up.zone, endpoint)) {
            return up.zone;
        }
        zone = up.zone; // a shorter name each time: the loop ends
    }
}

void shard::handle_query(uint32_t i, std::span<const std::byte> msg) noexcept {
    conn& c = _conns[i];
    ++_c.queries;
    char name_buf[dns::name_buffer_size];
    dns::query q = dns::parse_query(msg, std::span<char, dns::name_buffer_size>(name_buf, sizeof name_buf));
    std::span<std::byte> out(_scratch.get(), 4096);
    dns::build_result r;
    switch (dns::reply_for(q.error)) {
    case dns::reply_action::drop:
        ++_c.queries_malformed;
        close_conn(i, "malformed DNS message");
        return;
    case dns::reply_action::formerr:
        ++_c.queries_malformed;
        r = dns::build_header_response(msg, dns::rcode::formerr, out);
        break;
    case dns::reply_action::notimp:
        r = dns::build_header_response(msg, dns::rcode::notimp, out);
        break;
    case dns::reply_action::badvers: {
        dns::response_spec spec;
        spec.code = dns::rcode::badvers;
        spec.aa = false;
        r = dns::build_response(q, spec, out);
        break;
    }
    case dns::reply_action::answer: {
        if (size_t n = answer_catalog(c, q, {_scratch.get(), dns::max_message_size}); n > 0) {
            auto answer = std::span<const std::byte>(_scratch.get(), n);
            count_rcode(answer);
            if (!stage_answer(c, answer)) {
                ++_c.bugs;
            }
            return;
        }
        const table::table& t = _reader.current();
        table::name_match m = q.qname_exact ? t.find(q.qname) : table::name_match{};
        if (m.found()) {
            ++_c.queries_private;
            bool allowed = c.endpoint != table::none && t.allows(m.zone, c.endpoint);
            if (!allowed) {
                // Not allowed: exactly what a name that does not exist gets,
                // so the answer cannot tell that the private name exists. That
                // is the answer of the nearest enclosing zone this CN may see
                // (a name it does not have: NXDOMAIN), else the upstream's.
                ++_c.queries_denied;
                if (_o.log_queries) {
                    _log.info("DNS: {} denied {} (not allowed)", c.cn_view(), q.qname);
                }
                m = {visible_parent_zone(t, m.zone, c.endpoint), table::none};
            }
            if (m.found()) {
                std::array<uint8_t, 4> a[16];
                std::array<uint8_t, 16> aaaa[16];
                size_t na = 0, naaaa = 0;
                for (const auto& rec : t.records(m.rrset)) {
                    if (rec.type == table::format::type_a && q.qtype == dns::rr_type::a && na < 16) {
                        std::memcpy(a[na++].data(), rec.addr, 4);
                    } else if (rec.type != table::format::type_a && q.qtype == dns::rr_type::aaaa && naaaa < 16) {
                        std::memcpy(aaaa[naaaa++].data(), rec.addr, 16);
                    }
                }
                std::string_view zone = t.zone_name(m.zone);
                dns::response_spec spec;
                spec.ttl = _o.answer_ttl;
                spec.a = {a, na};
                spec.aaaa = {aaaa, naaaa};
                spec.ra = true;
                // The SOA (and its text) only for a negative answer; the
                // address text only for the log line.
                char rname[300];
                dns::soa_record soa;
                if (na + naaaa == 0) {
                    auto rn = fmt::format_to_n(rname, sizeof rname, "hostmaster.{}", zone);
                    soa = {zone, _o.server_name, {rname, std::min(rn.size, sizeof rname)}};
                    soa.minimum = _o.answer_ttl;
                    soa.ttl = _o.answer_ttl;
                    spec.code = (m.rrset != table::none || q.qname == zone) ? dns::rcode::noerror : dns::rcode::nxdomain;
                    spec.soa = &soa;
                }
                r = dns::build_response(q, spec, out);
                if (_o.log_queries && allowed) {
                    char addr_text[INET6_ADDRSTRLEN];
                    std::string_view shown = na     ? format_addr(a[0].data(), false, addr_text)
                                             : naaaa ? format_addr(aaaa[0].data(), true, addr_text)
                                             : spec.code == dns::rcode::nxdomain ? "NXDOMAIN"
                                                                                 : "NODATA";
                    _log.info("DNS: {} queried {} → {}", c.cn_view(), q.qname, shown);
                }
                break;
            }
        }
        std::byte key[dns_cache::max_key];
        size_t key_len =
            dns_cache::make_key(q.qname, q.qtype, q.qclass, q.opt.dnssec_ok, q.hdr.cd(), key);
        uint32_t age = 0;
        auto hit = _cache.find({key, key_len}, uint32_t(_now_ms / 1000), age);
        if (!hit.empty()) {
            ++_c.cache_hits;
            std::memcpy(out.data(), hit.data(), hit.size());
            auto cached = out.first(hit.size());
            dns::set_message_id(cached, q.hdr.id);
            dns::decrement_ttls(cached, age);
            if (q.opt.padding) {
                cached = out.first(dns::pad_response(out, hit.size()));
            }
            count_rcode(cached);
            if (!stage_answer(c, cached)) {
                ++_c.bugs;
            }
            return;
        }
        ++_c.cache_misses;
        forward(i, q, msg, {key, key_len});
        return;
    }
    }
    if (r.error != dns::build_error::none) {
        ++_c.bugs;
        close_conn(i, "cannot build an answer");
        return;
    }
    auto answer = out.first(r.size);
    count_rcode(answer);
    if (!stage_answer(c, answer)) {
        ++_c.bugs; // read_queries keeps room for this
    }
}

void shard::flush(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (c.state == conn_state::free || c.state == conn_state::closing) {
        return;
    }
    if (c.chunk == chunk_pool::none) {
        if (c.peer_eof && c.pending_upstream == 0 && c.stage_len == 0 && c.state == conn_state::open) {
            close_conn(i, nullptr);
        }
        return;
    }
    if (!c.send_inflight && c.out_sent > 0) {
        // Nothing in the kernel's hands: move what is unsent to the front.
        std::memmove(c.out.data, c.out.data + c.out_sent, c.out.length - c.out_sent);
        c.out.length -= c.out_sent;
        c.out_sent = 0;
    }
    // Encrypt staged answers into whatever room out has; bytes past what a
    // send in flight covers may be appended while it runs.
    while (c.state == conn_state::open && c.stage_off < c.stage_len &&
           c.out.capacity - c.out.length >= record_plaintext + 256) {
        size_t want = std::min<size_t>(c.stage_len - c.stage_off, record_plaintext), n = 0;
        tls::status st = c.tls.write({stage_of(c) + c.stage_off, want}, n);
        if (st == tls::status::failed) {
            close_conn(i, c.tls.error_string());
            return;
        }
        if (n == 0) {
            break;
        }
        c.stage_off += uint32_t(n);
        if (c.stage_off == c.stage_len) {
            c.stage_off = c.stage_len = 0;
        }
    }
    if (send_out(i)) {
        return;
    }
    if (c.peer_eof && c.pending_upstream == 0 && c.stage_len == 0 && c.state == conn_state::open) {
        close_conn(i, nullptr);
        return;
    }
    maybe_release_chunk(c);
}

bool shard::send_out(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (c.send_inflight) {
        return true;
    }
    if (c.out_sent >= c.out.length) {
        return false;
    }
    _ring->send(c.fd, c.out.data + c.out_sent, c.out.length - c.out_sent, tag_of(net::op::send, i));
    c.send_inflight = true;
    return true;
}

void shard::maybe_resume(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (!c.paused || c.state != conn_state::open || c.pending_upstream >= max_upstream_per_conn ||
        c.stage_len - c.stage_off + 4096 + 2 > stage_capacity) {
        return;
    }
    c.paused = false;
    read_queries(i);
    arm_recv(i);
}

shard::conn* shard::settle_send(uint32_t i, const net::completion& cq, bool conn::*inflight) noexcept {
    if (i >= _o.max_connections || _conns[i].generation != cq.t.generation) {
        return nullptr; // for a slot that has been reused since
    }
    conn& c = _conns[i];
    c.*inflight = false;
    if (c.state == conn_state::closing) {
        maybe_free(i);
        return nullptr;
    }
    if (cq.res < 0) {
        close_conn(i, std::strerror(-cq.res));
        return nullptr;
    }
    return &c;
}

void shard::on_send(uint32_t i, const net::completion& cq) noexcept {
    conn* cp = settle_send(i, cq, &conn::send_inflight);
    if (!cp) {
        return;
    }
    conn& c = *cp;
    c.out_sent += uint32_t(cq.res);
    if (c.state == conn_state::handshake) {
        flush(i);
        if (!c.send_inflight) {
            advance(i); // wolfSSL may have more of its flight to write
        }
        return;
    }
    if (c.kind == conn_kind::proxy) {
        proxy_flush(i);
        return;
    }
    if (cq.res > 0) {
        c.deadline_ms = _now_ms + _o.idle_timeout_ms; // the client reads its answers
    }
    flush(i);
    maybe_resume(i);
}

void shard::close_conn(uint32_t i, const char* why) noexcept {
    conn& c = _conns[i];
    if (c.state == conn_state::free || c.state == conn_state::closing) {
        return;
    }
    // A tunnel is two connections when a service endpoint carries it: both go.
    if (c.peer != table::none) {
        uint32_t p = c.peer;
        c.peer = table::none;
        _conns[p].peer = table::none;
        close_conn(p, "the other side of the tunnel closed");
    }
    if (c.tunnel == tunnel_state::parked || c.tunnel == tunnel_state::awaiting) {
        auto& list = c.tunnel == tunnel_state::parked ? _parked : _awaiting;
        for (size_t k = 0; k < list.size(); ++k) {
            if (list[k] == i) {
                list[k] = list.back();
                list.pop_back();
                break;
            }
        }
    }
    if (c.opened || c.tunnel == tunnel_state::paired) {
        // The seed's audit line, with what moved and how (for each side of a
        // service endpoint's pair; the tunnel counts once, on the client's).
        _log.info("Proxy: Connection closed for {} ({}s active, {} bytes up, {} bytes down, {}{}{})", c.cn_view(),
                  (_now_ms - c.opened_ms) / 1000, c.bytes_up, c.bytes_down, c.ktls ? "kTLS" : "user-space TLS",
                  why ? ", " : "",
                  why ? why : "");
        if (c.opened) {
            ++_c.tunnels_closed;
            --_c.tunnels_active;
            _c.tunnel_bytes_up += c.bytes_up;
            _c.tunnel_bytes_down += c.bytes_down;
        }
    } else if (why) {
        _log.info("{}: connection closed for {} ({}, {}s active, {} queries)",
                  c.kind == conn_kind::proxy ? "Proxy" : "DNS",
                  c.cn_len ? c.cn_view() : std::string_view("(unauthenticated)"), why,
                  (_now_ms - c.opened_ms) / 1000, c.queries);
    }
    if (c.state == conn_state::open && c.endpoint < _per_endpoint.size() && _per_endpoint[c.endpoint] > 0) {
        --_per_endpoint[c.endpoint];
    }
    c.state = conn_state::closing;
    --_open;
    ++_c.connections_closed;
    _c.connections_active = _open;
    if (c.recv_armed) {
        _ring->cancel(tag_of(net::op::recv, i));
    }
    if (c.send_inflight) {
        _ring->cancel(tag_of(net::op::send, i));
    }
    if (c.connect_inflight) {
        _ring->cancel(tag_of(net::op::connect, i));
    }
    if (c.brecv_armed) {
        _ring->cancel(tag_of(net::op::backend_recv, i));
    }
    if (c.bsend_inflight) {
        _ring->cancel(tag_of(net::op::backend_send, i));
    }
    if (c.up.poll_armed) {
        _ring->cancel(tag_of(net::op::poll_up, i));
    }
    if (c.down.poll_armed) {
        _ring->cancel(tag_of(net::op::poll_down, i));
    }
    maybe_free(i);
}

void shard::maybe_free(uint32_t i) noexcept {
    conn& c = _conns[i];
    if (c.state != conn_state::closing || c.recv_armed || c.send_inflight || c.connect_inflight || c.brecv_armed ||
        c.bsend_inflight || c.up.poll_armed || c.down.poll_armed) {
        return;
    }
    pipe_release(c.up);
    pipe_release(c.down);
    ::close(c.fd);
    close_backend(c);
    c.tls.reset();
    if (c.chunk != chunk_pool::none) {
        _chunks.release(c.chunk);
    }
    if (c.stage != chunk_pool::none) {
        _stages.release(c.stage);
    }
    uint32_t gen = (c.generation + 1) & 0xffffff;
    c.fd = -1;
    c.state = conn_state::free;
    c.recv_armed = c.send_inflight = c.paused = c.peer_eof = false; // starved stays: rearm_starved clears it
    c.chunk = c.stage = chunk_pool::none;
    c.endpoint = table::none;
    c.stage_off = 0;
    c.cin_len = c.stage_len = c.rx_len = c.out_sent = c.queries = c.pending_upstream = 0;
    c.out = {};
    c.cn_len = 0;
    c.kind = conn_kind::dot;
    c.tunnel = tunnel_state::sniffing;
    c.connect_inflight = c.brecv_armed = c.bsend_inflight = false;
    c.client_eof = c.backend_eof = c.backend_shut = c.client_shut = false;
    c.attempts = c.name_len = c.service_cn_len = 0;
    c.backend_fd = -1;
    c.service = table::none;
    c.c2b_len = c.c2b_sent = 0;
    c.bytes_up = c.bytes_down = 0;
    c.opened = false;
    c.ktls_wanted = c.ktls = c.exact_recv = c.recv_cancelling = false;
    c.peer = table::none;
    c.client_reply_us = unknown_reply;
    c.client_wait_from_us = 0;
    c.shut_pending = false;
    c.tracker = {};
    c.generation = gen ? gen : 1;
    _free_conns.push_back(i);
    uint32_t last = _live.back();
    _live[c.live_pos] = last;
    _conns[last].live_pos = c.live_pos;
    _live.pop_back();
}

void shard::on_tick() noexcept {
    _ring->timeout(&_tick, {net::op::timeout, 0, 0});
    for (uint32_t l : _accept_paused) {
        if (!_stopping && l < _listeners.size()) {
            _ring->accept_multishot(_listeners[l], {net::op::accept, 0, l});
        }
    }
    _accept_paused.clear();
    _c.busy_poll_hits = _ring->poll_hits();
    _c.busy_poll_misses = _ring->poll_misses();
    for_each_live([this](uint32_t i, conn& c) {
        if (c.state == conn_state::handshake && _now_ms >= c.deadline_ms) {
            ++_c.handshake_timeouts;
            close_conn(i, "handshake timeout");
        } else if (c.state == conn_state::open && c.kind == conn_kind::proxy) {
            if (_now_ms >= c.deadline_ms && c.tunnel == tunnel_state::awaiting) {
                ++_c.backend_unreachable;
                proxy_refuse(i, "no service endpoint connected");
            } else if (_now_ms >= c.deadline_ms && c.tunnel != tunnel_state::connecting) {
                ++_c.idle_timeouts;
                log::debug("Proxy: idle tunnel {}: recv {} brecv {} send {} bsend {} cin {} c2b {}/{} out {}/{} "
                           "eof {}/{} pending {}",
                           i, c.recv_armed, c.brecv_armed, c.send_inflight, c.bsend_inflight, c.cin_len, c.c2b_sent,
                           c.c2b_len, c.out_sent, c.out.length, c.client_eof, c.backend_eof, c.tls.pending());
                close_conn(i, c.tunnel == tunnel_state::sniffing ? "no destination name in time" : "idle timeout");
            } else if (c.ktls_wanted && !c.recv_armed) {
                ktls_try(i); // a safety net: every path that can unblock the switch calls it too
            } else if (!c.ktls) {
                if (!c.recv_armed) {
                    arm_recv(i);
                }
                proxy_arm_backend_recv(i);
            }
        } else if (c.state == conn_state::open) {
            if (_now_ms >= c.deadline_ms && c.pending_upstream == 0 && c.stage_len == 0 && !c.send_inflight) {
                ++_c.idle_timeouts;
                close_conn(i, nullptr);
            } else if (_now_ms >= c.deadline_ms && c.send_inflight) {
                // A send that has not moved for the idle timeout: the client
                // does not read (its window is closed). It would hold its slot
                // and buffers for good.
                ++_c.idle_timeouts;
                close_conn(i, "the client does not read its answers");
            } else if (!c.recv_armed) {
                arm_recv(i); // a safety net: rearm_starved re-arms after ENOBUFS
            }
        }
    });
    // Backwards, as finish_pending moves the last slot in use into the place it frees.
    for (uint32_t k = _pending_used; k-- > 0;) {
        if (k >= _pending_used) {
            continue;
        }
        uint16_t s = _pending_slots[k];
        pending& p = _pending[s];
        if (!p.answered && _now_ms >= p.deadline_ms) {
            ++_c.upstream_timeouts;
            answer_servfail(static_cast<uint16_t>(s));
            if (p.tcp != pending::tcp_phase::none) {
                // Its TCP request is still in the kernel: cancel, free on completion.
                p.tcp = pending::tcp_phase::abandoned;
                _ring->cancel({net::op::upstream_tcp, p.tcp_generation, s});
                continue;
            }
            finish_pending(static_cast<uint16_t>(s));
        }
    }
}

void shard::on_table_switch() noexcept {
    ++_c.table_switches;
    const table::table& t = _reader.current();
    _per_endpoint.assign(t.endpoint_count(), 0);
    for_each_live([&](uint32_t i, conn& c) {
        if (c.state != conn_state::open) {
            return;
        }
        uint32_t ep = t.find_endpoint(c.cn_view());
        if (ep == table::none || t.endpoint(ep).revoked) {
            ++_c.revoked_while_open;
            c.endpoint = table::none;
            const bool gone = ep == table::none;
            if (c.kind == conn_kind::dot) {
                refuse(i, gone ? tls::refusal::access_denied : tls::refusal::revoked,
                       gone ? "certificate CN no longer known" : "certificate revoked");
            } else {
                close_conn(i, "certificate revoked"); // a tunnel's TLS may be the kernel's: cut it as it is
            }
            return;
        }
        c.endpoint = ep;
        if (c.kind == conn_kind::proxy && c.name_len > 0 && c.tunnel != tunnel_state::sniffing &&
            !proxy_still_allowed(c, t)) {
            ++_c.revoked_while_open;
            c.endpoint = table::none; // not counted yet: nothing to give back
            close_conn(i, "no longer authorized");
        }
    });
    // Counted after the closes: closing one connection can free another and
    // move a visited slot back under the loop above.
    for (uint32_t i : _live) {
        if (_conns[i].state == conn_state::open && _conns[i].endpoint != table::none) {
            ++_per_endpoint[_conns[i].endpoint];
        }
    }
}

void shard::forward(uint32_t i, const dns::query& q, std::span<const std::byte> msg,
                    std::span<const std::byte> key) noexcept {
    conn& c = _conns[i];
    if (_upstream_fds.empty() || _pending_used == pending_capacity || msg.size() > dns::max_message_size) {
        ++_c.upstream_errors;
        std::span<std::byte> out(_scratch.get(), 4096);
        dns::response_spec spec;
        spec.code = dns::rcode::servfail;
        spec.aa = false;
        spec.ra = true;
        auto r = dns::build_response(q, spec, out);
        if (r.error == dns::build_error::none) {
            count_rcode(out.first(r.size));
            stage_answer(c, out.first(r.size));
        }
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (std::byte b : key) {
        h = (h ^ uint64_t(b)) * 0x100000001b3ull;
    }
    if (uint32_t busy = inflight_find(key, h); busy != none32 && !_free_waiters.empty()) {
        // The same question is on its way: wait for that answer.
        uint32_t w = _free_waiters.back();
        _free_waiters.pop_back();
        _waiters[w] = {i, c.generation, q.hdr.id, _pending[busy].waiters, _now_us, q.opt.padding};
        _pending[busy].waiters = w;
        ++c.pending_upstream;
        ++_c.queries_forwarded;
        return;
    }
    uint16_t slot = _pending_slots[_pending_used++];
    pending& p = _pending[slot];
    p.key_hash = h;
    p.waiters = none32;
    p.query_flags = q.hdr.flags;
    p.pad = q.opt.padding;
    p.conn = i;
    p.conn_generation = c.generation;
    p.client_id = q.hdr.id;
    p.answered = false;
    uint64_t r;
    do {
        r = next_random();
    } while (_slot_of_id[uint16_t(r)] != inflight_empty); // at most 4,096 of 65,536 ids are taken
    p.our_id = uint16_t(r);
    _slot_of_id[p.our_id] = slot;
    uint32_t upstream = _next_upstream++ % uint32_t(_o.upstreams.size());
    p.socket = static_cast<uint16_t>(upstream * upstream_sockets + (r >> 16) % upstream_sockets);
    p.deadline_ms = _now_ms + _o.upstream_timeout_ms;
    p.started_us = _now_us;
    p.key_len = static_cast<uint16_t>(key.size());
    std::memcpy(p.key, key.data(), key.size());
    p.question_len = static_cast<uint16_t>(q.question.size());
    std::memcpy(p.question, q.question.data(), q.question.size());
    inflight_insert(slot);
    ++c.pending_upstream;
    ++_c.queries_forwarded;
    // The query goes out as the client sent it, under our id. A datagram
    // send on a connected UDP socket does not block; the copy in scratch is
    // only needed for the duration of the call.
    std::memcpy(_scratch.get(), msg.data(), msg.size());
    std::span<std::byte> copy(_scratch.get(), msg.size());
    dns::set_message_id(copy, p.our_id);
    int fd = _upstream_fds[p.socket];
    if (::send(fd, copy.data(), copy.size(), MSG_DONTWAIT) < 0) {
        ++_c.upstream_errors; // the timeout answers SERVFAIL
    }
}

void shard::answer_servfail(uint16_t slot) noexcept {
    // Rebuild the question into a minimal SERVFAIL (RD and RA set; the id is set per client).
    const pending& p = _pending[slot];
    std::byte* out = _scratch.get();
    std::memset(out, 0, dns::header_size);
    out[2] = std::byte(0x81); // QR, RD
    out[3] = std::byte(0x82); // RA, SERVFAIL
    out[5] = std::byte(1);    // one question
    std::memcpy(out + dns::header_size, p.question, p.question_len);
    answer_pending(slot, {out, size_t(dns::header_size + p.question_len)});
}

void shard::answer_pending(uint16_t slot, std::span<std::byte> msg) noexcept {
    pending& p = _pending[slot];
    inflight_erase(slot);
    p.answered = true;
    uint32_t w = p.waiters;
    p.waiters = none32;
    dns::set_message_id(msg, p.client_id);
    deliver(p.conn, p.conn_generation, msg, p.started_us, p.pad);
    while (w != none32) {
        const waiter& x = _waiters[w];
        dns::set_message_id(msg, x.client_id);
        deliver(x.conn, x.conn_generation, msg, x.started_us, x.pad);
        _free_waiters.push_back(w);
        w = x.next;
    }
    for (size_t k = 0; k < _resume.size(); ++k) { // maybe_resume never adds to it
        auto [i, generation] = _resume[k];
        if (_conns[i].generation == generation) {
            maybe_resume(i);
        }
    }
    _resume.clear();
}

void shard::finish_pending(uint16_t slot) noexcept {
    pending& p = _pending[slot];
    if (!p.answered) {
        ++_c.bugs; // every path answers first
        answer_servfail(slot);
    }
    if (p.tcp_fd >= 0) {
        ::close(p.tcp_fd);
        p.tcp_fd = -1;
    }
    if (p.tcp_buf != chunk_pool::none) {
        _stages.release(p.tcp_buf);
        p.tcp_buf = chunk_pool::none;
    }
    p.tcp = pending::tcp_phase::none;
    ++p.tcp_generation;
    _slot_of_id[p.our_id] = inflight_empty;
    // The last slot in use takes its place; it goes first among the free.
    uint16_t last = _pending_slots[--_pending_used];
    _pending_slots[p.at] = last;
    _pending[last].at = p.at;
    _pending_slots[_pending_used] = slot;
    p.at = static_cast<uint16_t>(_pending_used);
}

uint32_t shard::inflight_find(std::span<const std::byte> key, uint64_t h) const noexcept {
    for (uint32_t i = uint32_t(h) & (inflight_capacity - 1);; i = (i + 1) & (inflight_capacity - 1)) {
        uint16_t s = _inflight[i];
        if (s == inflight_empty) {
            return none32;
        }
        const pending& p = _pending[s];
        if (p.key_hash == h && p.key_len == key.size() && std::memcmp(p.key, key.data(), key.size()) == 0) {
            return s;
        }
    }
}

void shard::inflight_insert(uint16_t slot) noexcept {
    uint32_t i = uint32_t(_pending[slot].key_hash) & (inflight_capacity - 1);
    while (_inflight[i] != inflight_empty) {
        i = (i + 1) & (inflight_capacity - 1);
    }
    _inflight[i] = slot;
}

void shard::inflight_erase(uint16_t slot) noexcept {
    constexpr uint32_t mask = inflight_capacity - 1;
    uint32_t hole = uint32_t(_pending[slot].key_hash) & mask;
    while (_inflight[hole] != slot) {
        if (_inflight[hole] == inflight_empty) {
            ++_c.bugs; // not indexed: nothing to erase
            return;
        }
        hole = (hole + 1) & mask;
    }
    // Backward-shift deletion keeps every probe sequence unbroken.
    for (uint32_t j = (hole + 1) & mask; _inflight[j] != inflight_empty; j = (j + 1) & mask) {
        uint32_t home = uint32_t(_pending[_inflight[j]].key_hash) & mask;
        bool movable = (j > hole) ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            _inflight[hole] = _inflight[j];
            hole = j;
        }
    }
    _inflight[hole] = inflight_empty;
}

void shard::on_upstream(const net::completion& cq) noexcept {
    if (!cq.more() && !_stopping && cq.t.index < _upstream_fds.size()) {
        _ring->recv_multishot(_upstream_fds[cq.t.index], group_udp, {net::op::upstream, 0, cq.t.index});
    }
    if (!cq.has_buffer()) {
        return;
    }
    uint16_t bid = cq.buffer_id();
    if (cq.res < int(dns::header_size)) {
        _ring->recycle(group_udp, bid);
        return;
    }
    std::span<std::byte> resp(_ring->buffer(group_udp, bid), size_t(cq.res));
    uint16_t id = be16(resp.data());
    uint16_t slot = _slot_of_id[id];
    if (slot == inflight_empty || _pending[slot].answered || _pending[slot].socket != cq.t.index) {
        ++_c.upstream_errors; // late (after a timeout) or not ours
        _ring->recycle(group_udp, bid);
        return;
    }
    pending& p = _pending[slot];
    auto check = dns::validate_response(resp, id, {p.question, p.question_len});
    if (check.error != dns::upstream_error::none) {
        ++_c.upstream_errors;
        _ring->recycle(group_udp, bid);
        return; // wait for the real answer or the timeout
    }
    if (p.tcp != pending::tcp_phase::none) {
        // A retry over TCP is under way, its buffer and socket in the
        // kernel's hands: its answer (or the timeout) ends the slot, not a
        // second datagram.
        ++_c.upstream_errors;
        _ring->recycle(group_udp, bid);
        return;
    }
    if (check.truncated) {
        // DoT clients cannot retry over TCP themselves: we do, once.
        ++_c.upstream_truncated;
        _ring->recycle(group_udp, bid);
        upstream_tcp_start(slot, cq.t.index / upstream_sockets);
        return;
    }
    upstream_answer(slot, resp, true);
    _ring->recycle(group_udp, bid);
}

void shard::upstream_answer(uint16_t slot, std::span<std::byte> resp, bool cache) noexcept {
    pending& p = _pending[slot];
    if (cache) {
        auto ttl = dns::response_cache_ttl(resp, 0, 86400);
        if (ttl.status == dns::ttl_status::cacheable) {
            _cache.insert({p.key, p.key_len}, resp, uint32_t(_now_ms / 1000), ttl.ttl);
        }
    }
    answer_pending(slot, resp);
    finish_pending(slot);
}

void shard::upstream_tcp_start(uint16_t slot, uint32_t upstream) noexcept {
    pending& p = _pending[slot];
    const net::address& u = _o.upstreams[upstream % _o.upstreams.size()];
    p.tcp_buf = _stages.acquire();
    int fd = p.tcp_buf == chunk_pool::none ? -1 : ::socket(u.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ++_c.upstream_errors;
        answer_servfail(slot);
        finish_pending(slot);
        return;
    }
    net::set_nodelay(fd);
    p.tcp_fd = fd;
    // The question again, as a new query with the same flags (no EDNS: TCP has no size limit).
    std::byte* b = _stages.at(p.tcp_buf);
    uint16_t len = static_cast<uint16_t>(dns::header_size + p.question_len);
    std::memset(b, 0, 2 + dns::header_size);
    b[0] = std::byte(len >> 8);
    b[1] = std::byte(len);
    b[2] = std::byte(p.our_id >> 8);
    b[3] = std::byte(p.our_id);
    b[4] = std::byte((p.query_flags >> 8) & 0x01); // RD
    b[5] = std::byte(p.query_flags & 0x10);         // CD
    b[7] = std::byte(1);                            // one question
    std::memcpy(b + 2 + dns::header_size, p.question, p.question_len);
    p.tcp_len = 2u + len;
    std::memcpy(&p.tcp_addr, &u.storage, sizeof p.tcp_addr);
    uint64_t left = p.deadline_ms > _now_ms ? p.deadline_ms - _now_ms : 1;
    p.tcp_timeout = {static_cast<int64_t>(left / 1000), static_cast<long long>(left % 1000) * 1'000'000};
    p.tcp = pending::tcp_phase::connecting;
    _ring->connect_with_timeout(fd, reinterpret_cast<const sockaddr*>(&p.tcp_addr), u.length,
                                {net::op::upstream_tcp, p.tcp_generation, slot}, &p.tcp_timeout);
}

void shard::on_upstream_tcp(const net::completion& cq) noexcept {
    if (cq.t.index >= pending_capacity) {
        return;
    }
    uint16_t slot = static_cast<uint16_t>(cq.t.index);
    pending& p = _pending[slot];
    if ((p.tcp_generation & 0xffffff) != cq.t.generation) {
        return;
    }
    if (p.tcp == pending::tcp_phase::abandoned) {
        finish_pending(slot); // the clients got SERVFAIL at the timeout
        return;
    }
    auto fail = [&] {
        ++_c.upstream_errors;
        answer_servfail(slot);
        finish_pending(slot);
    };
    if (cq.res < 0) {
        fail();
        return;
    }
    std::byte* b = _stages.at(p.tcp_buf);
    net::tag t{net::op::upstream_tcp, p.tcp_generation, slot};
    switch (p.tcp) {
    case pending::tcp_phase::connecting:
        p.tcp = pending::tcp_phase::sending;
        _ring->send(p.tcp_fd, b, p.tcp_len, t);
        return;
    case pending::tcp_phase::sending:
        if (uint32_t(cq.res) < p.tcp_len) {
            std::memmove(b, b + cq.res, p.tcp_len - uint32_t(cq.res));
            p.tcp_len -= uint32_t(cq.res);
            _ring->send(p.tcp_fd, b, p.tcp_len, t);
            return;
        }
        p.tcp = pending::tcp_phase::receiving;
        p.tcp_len = 0;
        _ring->recv(p.tcp_fd, b, stage_capacity, t);
        return;
    case pending::tcp_phase::receiving: {
        if (cq.res == 0) {
            fail();
            return;
        }
        p.tcp_len += uint32_t(cq.res);
        uint32_t need = p.tcp_len >= 2 ? 2u + be16(b) : 2u;
        if (p.tcp_len < need) {
            _ring->recv(p.tcp_fd, b + p.tcp_len, stage_capacity - p.tcp_len, t);
            return;
        }
        std::span<std::byte> resp(b + 2, need - 2);
        auto check = dns::validate_response(resp, p.our_id, {p.question, p.question_len});
        if (check.error != dns::upstream_error::none) {
            fail();
            return;
        }
        upstream_answer(slot, resp, true);
        return;
    }
    default:
        return;
    }
}

void shard::deliver(uint32_t idx, uint32_t gen, std::span<const std::byte> msg, uint64_t started_us,
                    bool pad) noexcept {
    conn& c = _conns[idx];
    if (c.generation != gen || c.state != conn_state::open) {
        return;
    }
    if (pad) {
        std::memcpy(_padded.get(), msg.data(), msg.size());
        msg = {_padded.get(), dns::pad_response({_padded.get(), dns::max_message_size}, msg.size())};
    }
    if (c.pending_upstream > 0) {
        --c.pending_upstream;
    }
    uint64_t us = _now_us > started_us ? _now_us - started_us : 0;
    size_t b = 0;
    while (b + 1 < latency_buckets && (uint64_t(2) << b) <= us) {
        ++b;
    }
    ++_c.forwarded_latency_us[b];
    count_rcode(msg);
    if (!ensure_chunk(c)) {
        close_conn(idx, "out of connection buffers");
        return;
    }
    if (!stage_answer(c, msg)) {
        flush(idx);
        if (!stage_answer(c, msg)) {
            close_conn(idx, "the client does not read its answers");
            return;
        }
    }
    flush(idx);
    if (c.paused) {
        _resume.emplace_back(idx, gen);
    }
}

} // namespace zt::dataplane
