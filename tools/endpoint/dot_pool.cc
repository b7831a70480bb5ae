// The DoT client pool (see dot_pool.hh).
#include "tools/endpoint/dot_pool.hh"

#include "common/dns/framing.hh"
#include "common/dns/wire.hh"
#include "common/util/log.hh"

#include <algorithm>
#include <array>
#include <cstring>

namespace zt::endpoint {
namespace {

constexpr ms_t connect_timeout_ms = 2000;
constexpr size_t max_inflight_per_conn = 128;
/// A query arriving while every connection is down may start one attempt this often, backoff or not.
constexpr ms_t on_demand_interval_ms = 500;
/// A connection the server closed sooner than this after the handshake counts as a failure (no reconnect storm).
constexpr ms_t short_lived_ms = 3000;

/// The first wait after a failure; it doubles after each more.
constexpr ms_t first_backoff_ms = 100;

} // namespace

dot_pool::dot_pool(loop& l, const tls::context& ctx, address_choice& servers, std::string server_name,
                   unsigned connections)
    : _loop(l), _ctx(ctx), _servers(servers), _server_name(std::move(server_name)) {
    for (unsigned i = 0; i < connections; ++i) {
        auto c = std::make_unique<conn>();
        c->pool = this;
        c->index = int(i);
        _conns.push_back(std::move(c));
    }
}

dot_pool::~dot_pool() {
    for (auto& c : _conns) {
        if (c->st) {
            c->st->close();
        }
    }
}

void dot_pool::start() {
    for (auto& c : _conns) {
        connect(*c, _loop.now());
    }
}

bool dot_pool::up() const noexcept {
    return std::any_of(_conns.begin(), _conns.end(), [](const auto& c) { return c->state == conn_state::ready; });
}

bool dot_pool::any_connecting() const noexcept {
    return std::any_of(_conns.begin(), _conns.end(), [](const auto& c) { return c->state == conn_state::connecting; });
}

dot_pool::conn* dot_pool::best_ready() noexcept {
    conn* best = nullptr;
    for (auto& c : _conns) {
        if (c->state == conn_state::ready && c->inflight.size() < max_inflight_per_conn &&
            (!best || c->inflight.size() < best->inflight.size())) {
            best = c.get();
        }
    }
    return best;
}

void dot_pool::connect(conn& c, ms_t now) {
    c.server = _servers.order(now).front(); // the next server in turn, one that did not fail lately first
    c.st = std::make_unique<tls_stream>(_loop, &c);
    c.tx.clear();
    c.rx.clear();
    c.inflight.clear();
    c.state = conn_state::connecting;
    c.deadline = now + connect_timeout_ms;
    _last_attempt = now;
    if (!c.st->connect(_servers.at(c.server), {&_ctx, _server_name, _server_name, {}})) {
        conn_down(c, c.st->error());
        return;
    }
    c.st->update_interest(); // writable when connected
}

void dot_pool::pump(conn& c) {
    // A callback run from here may submit a query for this connection: the running pump writes it.
    if (!c.st || c.state == conn_state::down || c.busy) {
        return;
    }
    c.busy = true;
    struct unbusy {
        conn& c;
        ~unbusy() { c.busy = false; }
    } guard{c};
    for (int round = 0; round < 64; ++round) {
        bool moved = c.st->progress();
        if (c.st->failed()) {
            conn_down(c, c.st->error());
            return;
        }
        if (c.state == conn_state::connecting && c.st->open()) {
            c.state = conn_state::ready;
            c.opened_ms = c.last_rx_ms = _loop.now();
            c.answered = false;
            _servers.succeeded(c.server);
            if (!_was_up || _reported_down) {
                log::info("Endpoint: DoT connected to {} ({})", c.st->peer().str(), _server_name);
            }
            _was_up = true;
            _reported_down = false;
            drain_waiting();
            moved = true;
        }
        if (!c.tx.empty() && c.st->can_write()) {
            size_t n = c.st->write_plain(c.tx);
            c.tx.erase(c.tx.begin(), c.tx.begin() + ptrdiff_t(n));
            moved |= n > 0;
        }
        while (c.rx.room() > 0 && c.st->readable()) {
            std::byte* t = c.rx.tail();
            size_t n = c.st->read_plain({t, c.rx.tail_room()});
            if (n == 0) {
                break;
            }
            c.rx.commit(n);
            c.last_rx_ms = _loop.now();
            moved = true;
        }
        if (c.st->failed()) {
            conn_down(c, c.st->error());
            return;
        }
        for (;;) {
            auto f = dns::next_frame({c.rx.data(), c.rx.size()});
            if (f.status == dns::frame_status::empty_frame) {
                conn_down(c, "the server sent an empty DoT frame");
                return;
            }
            if (f.status != dns::frame_status::complete) {
                break;
            }
            std::vector<std::byte> msg(f.message.begin(), f.message.end());
            c.rx.consume(f.consumed);
            c.answered = true;
            on_answer(c, msg);
            if (c.state != conn_state::ready) {
                return; // a callback took it down
            }
        }
        if (c.st->peer_finished()) {
            conn_down(c, "closed by the server");
            return;
        }
        if (!moved) {
            break;
        }
    }
    c.st->update_interest();
}

std::string dot_pool::refusal(const conn& c, bool was_ready, const std::string& why) const {
    // The appliance checks the certificate's CN after the TLS handshake and says why it refuses it with an alert;
    // an older one closed without a word.
    const int alert = c.st ? c.st->peer_alert() : -1;
    if (alert == static_cast<int>(tls::refusal::revoked)) {
        return "the appliance refuses this endpoint: its certificate is revoked (certificate_revoked alert)";
    }
    if (alert == static_cast<int>(tls::refusal::access_denied)) {
        return "the appliance refuses this endpoint: its certificate is unknown there, or over its connection "
               "limit (access_denied alert)";
    }
    if (was_ready && !c.answered && why == "closed by the server") {
        return "closed by the server after the handshake, before any answer: the appliance refuses this endpoint "
               "(its certificate revoked or unknown there, or over its connection limit)";
    }
    return why;
}

void dot_pool::conn_down(conn& c, const std::string& why) {
    const ms_t now = _loop.now();
    const bool was_ready = c.state == conn_state::ready;
    const bool clean = was_ready && why == "closed by the server" && now - c.opened_ms >= short_lived_ms;
    const std::string said = refusal(c, was_ready, why); // before close(): the session holds the peer's alert
    if (c.st) {
        c.st->close(!clean);
    }
    c.state = conn_state::down;
    if (clean) {
        c.next_attempt = now; // the server closed an idle connection: reopen, no backoff
        log::debug("Endpoint: DoT connection to {} closed by the server; reconnecting", c.st->peer().str());
    } else {
        ++_failures;
        _servers.failed(c.server, now); // the next attempts prefer the other servers
        c.next_attempt = now + backoff_ms(first_backoff_ms, _failures);
        if (!_reported_down) {
            log::warn("Endpoint: DoT {}: {}; retrying with backoff", c.st ? c.st->peer().str() : "", said);
            _reported_down = !up();
        }
    }
    std::vector<uint64_t> moved;
    for (auto& [id, serial] : c.inflight) {
        moved.push_back(serial);
    }
    c.inflight.clear();
    c.tx.clear();
    c.rx.clear();
    for (uint64_t serial : moved) {
        auto it = _requests.find(serial);
        if (it == _requests.end()) {
            continue;
        }
        it->second.conn = -1;
        if (it->second.tries < 2 && it->second.deadline > now) {
            _waiting.push_front(serial);
        } else {
            complete(serial, {});
        }
    }
    if (clean) {
        connect(c, now);
    }
    drain_waiting();
    fail_waiting_if_hopeless();
}

void dot_pool::submit(std::span<const std::byte> query, ms_t deadline, callback cb) {
    std::array<char, dns::name_buffer_size> nb{};
    auto q = dns::parse_query(query, std::span<char, dns::name_buffer_size>(nb));
    if (q.error != dns::query_error::none && q.error != dns::query_error::bad_edns_version) {
        cb({});
        return;
    }
    request r;
    r.msg.assign(query.begin(), query.end());
    r.client_id = q.hdr.id;
    r.q_off = size_t(q.question.data() - query.data());
    r.q_len = q.question.size();
    r.deadline = deadline;
    r.cb = std::move(cb);
    uint64_t serial = _next_serial++;
    _requests.emplace(serial, std::move(r));
    dispatch(serial);
}

void dot_pool::dispatch(uint64_t serial) {
    if (conn* c = best_ready()) {
        send_on(*c, serial);
        return;
    }
    _waiting.push_back(serial);
    const ms_t now = _loop.now();
    if (!any_connecting() && !up()) {
        // Every connection is down. One attempt now if the last was a while ago; else fail fast.
        for (auto& c : _conns) {
            if (c->state == conn_state::down &&
                (now >= c->next_attempt || now - _last_attempt >= on_demand_interval_ms)) {
                connect(*c, now);
                break;
            }
        }
    }
    fail_waiting_if_hopeless();
}

void dot_pool::send_on(conn& c, uint64_t serial) {
    auto it = _requests.find(serial);
    if (it == _requests.end()) {
        return;
    }
    request& r = it->second;
    uint16_t id = c.next_id;
    while (c.inflight.count(id)) {
        ++id;
    }
    c.next_id = uint16_t(id + 1);
    r.wire_id = id;
    r.conn = c.index;
    r.sent_ms = _loop.now();
    ++r.tries;
    dns::set_message_id(r.msg, id);
    c.inflight.emplace(id, serial);
    std::byte prefix[2];
    dns::write_frame_prefix(prefix, r.msg.size());
    c.tx.insert(c.tx.end(), prefix, prefix + 2);
    c.tx.insert(c.tx.end(), r.msg.begin(), r.msg.end());
    pump(c);
}

void dot_pool::on_answer(conn& c, std::span<const std::byte> msg) {
    auto h = dns::read_header(msg);
    if (!h) {
        return;
    }
    auto it = c.inflight.find(h->id);
    if (it == c.inflight.end()) {
        return; // late: its query already timed out
    }
    uint64_t serial = it->second;
    c.inflight.erase(it);
    auto rit = _requests.find(serial);
    if (rit == _requests.end()) {
        return;
    }
    const request& r = rit->second;
    auto check = dns::validate_response(msg, r.wire_id, std::span(r.msg).subspan(r.q_off, r.q_len));
    if (check.error != dns::upstream_error::none) {
        log::debug("Endpoint: DoT answer does not match its query ({})", int(check.error));
        complete(serial, {});
        return;
    }
    std::vector<std::byte> answer(msg.begin(), msg.end());
    dns::set_message_id(answer, r.client_id);
    complete(serial, answer);
    drain_waiting();
}

void dot_pool::complete(uint64_t serial, std::span<const std::byte> answer) {
    auto it = _requests.find(serial);
    if (it == _requests.end()) {
        return;
    }
    callback cb = std::move(it->second.cb);
    _requests.erase(it);
    cb(answer);
}

void dot_pool::drain_waiting() {
    while (!_waiting.empty()) {
        if (!_requests.count(_waiting.front())) {
            _waiting.pop_front(); // timed out while waiting
            continue;
        }
        conn* c = best_ready();
        if (!c) {
            return;
        }
        uint64_t serial = _waiting.front();
        _waiting.pop_front();
        send_on(*c, serial);
    }
}

void dot_pool::fail_waiting_if_hopeless() {
    if (up() || any_connecting()) {
        return;
    }
    std::deque<uint64_t> w;
    w.swap(_waiting);
    for (uint64_t serial : w) {
        complete(serial, {});
    }
}

ms_t dot_pool::tick(ms_t now) {
    ms_t next = now + 1000;
    std::vector<uint64_t> expired;
    for (auto& [serial, r] : _requests) {
        if (now >= r.deadline) {
            expired.push_back(serial);
        } else {
            next = std::min(next, r.deadline);
        }
    }
    for (uint64_t serial : expired) {
        auto it = _requests.find(serial);
        if (it == _requests.end()) {
            continue;
        }
        if (it->second.conn >= 0) {
            conn& c = *_conns[size_t(it->second.conn)];
            c.inflight.erase(it->second.wire_id);
            if (c.state == conn_state::ready && c.last_rx_ms < it->second.sent_ms) {
                // Nothing at all came back since this query left: the connection is likely dead.
                complete(serial, {});
                conn_down(c, "no answer in time");
                continue;
            }
        }
        complete(serial, {});
    }
    for (auto& c : _conns) {
        if (c->state == conn_state::connecting && now >= c->deadline) {
            conn_down(*c, "no TLS session in time");
        }
        if (c->state == conn_state::down && now >= c->next_attempt) {
            connect(*c, now);
        }
        if (c->state == conn_state::connecting) {
            next = std::min(next, c->deadline);
        } else if (c->state == conn_state::down) {
            next = std::min(next, c->next_attempt);
        }
    }
    return std::max(next, now);
}

} // namespace zt::endpoint
