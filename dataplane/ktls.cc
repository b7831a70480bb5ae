// Kernel TLS for proxy tunnels: once a tunnel is connected, user-space TLS is
// drained to a record boundary (what wolfSSL holds is decrypted and passed on,
// a partial record is completed with an exact-length read), the keys and
// sequence numbers go to the kernel (TLS_TX/TLS_RX), the WOLFSSL is freed, and
// bytes move socket -> pipe -> socket with splice: user space never touches
// the payload. Readiness comes from io_uring polls; each splice is one
// non-blocking syscall moving up to 64 KiB (one record from a kTLS socket). A
// non-data record stops splice (EINVAL) and is read with recvmsg: close_notify
// becomes a FIN to the service, a service FIN becomes close_notify + FIN to the
// client, a KeyUpdate (which the 6.1 kernel cannot follow) closes the tunnel.
// An end that user-space TLS already saw (close_notify before the switch) is
// passed on the same way; a client whose FIN arrived before the switch stays
// in user space (the kernel takes the ULP only on an established socket).
// Proved in the VM by tests/e2e/proxy_ktls_vm_test.sh.
#include "dataplane/shard.hh"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zt::dataplane {
namespace {
constexpr size_t splice_chunk = 64 * 1024;
} // namespace

bool shard::pipe_acquire(conn::pipe_dir& d) noexcept {
    if (d.r >= 0) {
        return true;
    }
    if (!_pipes.empty()) {
        std::tie(d.r, d.w) = _pipes.back();
        _pipes.pop_back();
        return true;
    }
    int p[2];
    if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        return false;
    }
    d.r = p[0];
    d.w = p[1];
    return true;
}

void shard::pipe_release(conn::pipe_dir& d) noexcept {
    if (d.r < 0) {
        return;
    }
    // An empty pipe goes back to the pool; one with bytes in it cannot be reused.
    if (d.in_pipe == 0 && _pipes.size() < pipe_pool_cap) {
        _pipes.emplace_back(d.r, d.w);
    } else {
        ::close(d.r);
        ::close(d.w);
    }
    d.r = d.w = -1;
    d.in_pipe = 0;
}

void shard::ktls_try(uint32_t i) noexcept {
    conn& c = _conns[i];
    // A loop: draining calls back into the proxy, which may come back here
    // (and install, or close) before it returns; so everything is checked again.
    for (;;) {
        if (!c.ktls_wanted || c.state != conn_state::open || c.tunnel != tunnel_state::forwarding) {
            return;
        }
        // Everything already encrypted by wolfSSL must be on the wire first, and
        // everything it received must be read out of it.
        if (c.recv_armed) {
            // A provided-buffer recv could take bytes of records that are the
            // kernel's: cancel it (what it may already have got is drained below).
            if (!c.exact_recv && !c.recv_cancelling) {
                _ring->cancel(tag_of(net::op::recv, i));
                c.recv_cancelling = true;
            }
            return;
        }
        if (c.send_inflight || (c.chunk != chunk_pool::none && c.out.length > c.out_sent)) {
            return;
        }
        if (c.cin_len > 0 || c.tls.pending() > 0) {
            if (c.c2b_len == c2b_capacity) {
                return; // back here when c2b has been sent (on_backend_send)
            }
            uint32_t cin_before = c.cin_len, c2b_before = c.c2b_len;
            proxy_from_client(i); // decrypts into c2b, then sends it
            if (c.state == conn_state::open && c.cin_len == cin_before && c.c2b_len == c2b_before) {
                if (!c.client_eof) {
                    return; // no progress: nothing left to do but wait for the service
                }
                // Bytes after the client's close_notify mean nothing (wolfSSL is
                // not asked for them any more): drop them.
                c.cin_len = 0;
            }
            continue;
        }
        if (uint32_t need = c.tracker.needed(); need > 0) {
            // Complete the partial record wolfSSL holds, and not one byte more:
            // the next record belongs to the kernel.
            if (!ensure_chunk(c)) {
                close_conn(i, "out of connection buffers");
                return;
            }
            _ring->recv(c.fd, cin_of(c) + c.cin_len, need, tag_of(net::op::recv, i));
            c.recv_armed = true;
            c.exact_recv = true;
            return;
        }
        break;
    }
    // The kernel takes the ULP only on an established connection: a client
    // whose FIN is already here has sent everything it will, and stays in
    // user space (its close line says so). Not an error: no warning.
    tcp_info ti{};
    socklen_t ti_len = sizeof ti;
    bool established = ::getsockopt(c.fd, IPPROTO_TCP, TCP_INFO, &ti, &ti_len) != 0 || ti.tcpi_state == TCP_ESTABLISHED;
    std::string err;
    tls::ktls::install_status st =
        established ? tls::ktls::install(c.fd, c.tls.raw(), true, err) : tls::ktls::install_status::fallback;
    switch (st) {
    case tls::ktls::install_status::installed:
        c.tls.reset(); // the kernel has the keys; no close_notify from wolfSSL
        c.ktls = true;
        c.ktls_wanted = false;
        ++_c.tunnels_ktls;
        if (c.chunk != chunk_pool::none) {
            c.out.length = c.out_sent = 0;
        }
        // A kTLS tunnel needs no connection buffer once what user-space TLS
        // decrypted has reached the service (else ktls_pump releases it then).
        maybe_release_chunk(c);
        ktls_pump(i, true); // waits for c2b itself
        ktls_pump(i, false);
        return;
    case tls::ktls::install_status::fallback:
        if (established) {
            _log.warn("Proxy: kernel TLS refused for {}: {}; staying in user space", c.cn_view(), err);
        }
        c.ktls_wanted = false;
        proxy_from_client(i);
        arm_recv(i);
        proxy_flush(i);
        return;
    case tls::ktls::install_status::broken:
        close_conn(i, "kernel TLS half-installed");
        return;
    }
}

void shard::ktls_pump(uint32_t i, bool up) noexcept {
    conn& c = _conns[i];
    conn::pipe_dir& d = up ? c.up : c.down;
    int src = up ? c.fd : c.backend_fd;
    int dst = up ? c.backend_fd : c.fd;
    net::op kind = up ? net::op::poll_up : net::op::poll_down;
    if (d.poll_armed || c.state != conn_state::open) {
        return;
    }
    if (up && (c.c2b_len > 0 || c.bsend_inflight)) {
        return; // what user-space TLS decrypted goes first; on_backend_send calls again
    }
    if (up) {
        maybe_release_chunk(c);
    }
    auto wait_for = [&](int fd, short events) {
        _ring->poll(fd, uint32_t(events), tag_of(kind, i));
        d.poll_armed = true;
    };
    for (;;) {
        if (d.in_pipe > 0) {
            ssize_t n = ::splice(d.r, nullptr, dst, nullptr, d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                d.in_pipe -= uint32_t(n);
                (up ? c.bytes_up : c.bytes_down) += uint64_t(n);
                c.deadline_ms = _now_ms + _o.tunnel_idle_timeout_ms;
                continue;
            }
            if (n < 0 && errno == EAGAIN) {
                wait_for(dst, POLLOUT);
                return;
            }
            close_conn(i, n == 0 ? "short splice" : std::strerror(errno));
            return;
        }
        if (up ? c.client_eof : c.backend_eof) {
            break; // this direction has ended: pass the end on (below)
        }
        if (!pipe_acquire(d)) {
            close_conn(i, "no pipe for splice");
            return;
        }
        ssize_t n = ::splice(src, nullptr, d.w, nullptr, splice_chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d.in_pipe = uint32_t(n);
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            pipe_release(d); // an idle direction holds no pipe
            wait_for(src, POLLIN);
            return;
        }
        if (n == 0) {
            // FIN (from the client: without close_notify; the service may still answer).
            pipe_release(d);
            (up ? c.client_eof : c.backend_eof) = true;
            continue;
        }
        if (!up || errno != EINVAL) {
            close_conn(i, std::strerror(errno));
            return;
        }
        // A non-data record is next on the kTLS socket: splice cannot read it.
        std::byte rec[512];
        uint8_t type = 0;
        ssize_t r = tls::ktls::recv_record(c.fd, rec, sizeof rec, type);
        if (r < 0 && errno == EAGAIN) {
            wait_for(src, POLLIN);
            return;
        }
        if (r < 0) {
            close_conn(i, std::strerror(errno));
            return;
        }
        switch (tls::ktls::classify(type, {rec, size_t(r)})) {
        case tls::ktls::record_kind::close_notify:
            pipe_release(d);
            c.client_eof = true;
            continue;
        case tls::ktls::record_kind::handshake:
            continue; // e.g. a NewSessionTicket: nothing for the service
        case tls::ktls::record_kind::data:
            // Data read by recvmsg instead of splice (a race with the record
            // type): pass it on as is.
            if (r > 0 && ::send(c.backend_fd, rec, size_t(r), MSG_NOSIGNAL) != r) {
                close_conn(i, "service write failed");
                return;
            }
            c.bytes_up += uint64_t(r);
            continue;
        case tls::ktls::record_kind::key_update:
            ++_c.ktls_key_updates;
            close_conn(i, "client KeyUpdate (kernel TLS cannot follow it)");
            return;
        default:
            close_conn(i, "TLS alert from the client");
            return;
        }
    }
    // This direction has ended, and everything before the end is through.
    if (up && !c.backend_shut) {
        // The client is done (close_notify or FIN): the service sees EOF and may still answer.
        ::shutdown(c.backend_fd, SHUT_WR);
        c.backend_shut = true;
    }
    if (!up && !c.client_shut) {
        // The service is done: close_notify, then FIN, to the client. A full
        // socket buffer refuses the alert for now: try again when writable.
        if (!tls::ktls::send_close_notify(c.fd)) {
            if (errno == EAGAIN) {
                wait_for(c.fd, POLLOUT);
                return;
            }
            close_conn(i, std::strerror(errno));
            return;
        }
        ::shutdown(c.fd, SHUT_WR);
        c.client_shut = true;
    }
    if (c.backend_shut && c.client_shut) {
        close_conn(i, nullptr);
    }
}

void shard::on_ktls_poll(uint32_t i, bool up, const net::completion& cq) noexcept {
    if (i >= _o.max_connections || _conns[i].generation != cq.t.generation) {
        return;
    }
    conn& c = _conns[i];
    (up ? c.up : c.down).poll_armed = false;
    if (c.state == conn_state::closing) {
        maybe_free(i);
        return;
    }
    if (cq.res < 0) {
        close_conn(i, std::strerror(-cq.res));
        return;
    }
    ktls_pump(i, up);
}

} // namespace zt::dataplane
