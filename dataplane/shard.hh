// One shard: a thread pinned to a core that owns an io_uring, its own
// SO_REUSEPORT listeners, a slab of connections, a chunk pool for their
// buffers, an upstream UDP socket, a DNS cache, counters and a log buffer.
// Shards share nothing mutable; the route table comes through a
// table::holder::reader switched once per loop turn.
#pragma once

#include "common/dns/wire.hh"
#include "common/net/ring.hh"
#include "common/net/socket.hh"
#include "common/table/holder.hh"
#include "common/tls/ktls.hh"
#include "common/tls/tls.hh"
#include "common/util/log.hh"
#include "dataplane/counters.hh"
#include "dataplane/health.hh"
#include "dataplane/dns_cache.hh"
#include "dataplane/pool.hh"

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zt::dataplane {

/// What every shard is started with (copied into each).
struct shard_options {
    std::vector<net::address> dot_listen;   ///< ports already resolved (no 0)
    std::vector<net::address> proxy_listen; ///< the TLS proxy's listeners
    std::vector<net::address> upstreams;
    std::string server_name; ///< mname of synthesized SOA records
    uint32_t max_connections = 16384;
    /// File descriptors this shard may hold for connections (main.cc: the
    /// hard limit shared out). A proxy connection whose service socket is in
    /// the process's fd table holds two (no direct descriptors), or four with
    /// kernel TLS (and a pipe, while a direction's bytes wait for the other
    /// side), so init() divides max_connections by that.
    uint32_t fd_budget = 16384;
    uint32_t max_connections_per_cn = 1024;
    uint32_t buffer_chunks = 2048;
    uint32_t handshake_timeout_ms = 5000;
    uint32_t idle_timeout_ms = 30000;
    uint32_t tunnel_idle_timeout_ms = 3600000;
    uint32_t upstream_timeout_ms = 2000;
    uint32_t max_queries_per_connection = 65535;
    uint32_t cache_entries = 16384;
    uint32_t answer_ttl = 60; ///< TTL of private answers
    bool log_queries = true;
    uint32_t sniff_timeout_ms = 5000; ///< for the first plaintext bytes when there is no SNI
    bool ktls = false;                ///< hand tunnels to kernel TLS (probed at start, --ktls)
    uint32_t shard_count = 1;         ///< told to service endpoints, so they keep each shard supplied
    uint32_t busy_poll_us = 0;        ///< net::ring::set_busy_poll
};

/// Shared, read-only after start: the TLS context and the stop flag.
struct shard_shared {
    /// The server certificate in use; swapped by the main thread when control
    /// renews it. Old contexts stay alive until exit (they are few and small).
    std::atomic<const tls::context*> server_tls{nullptr};
    std::atomic<bool> stop{false};
    uint32_t drain_ms = 3000; ///< how long open work may finish after stop
    /// Verdicts of the active health checks (written by the prober thread only); may be null.
    const health_board* health = nullptr;
};

class shard {
public:
    /// `counters` is this shard's block of the metrics page (main.cc), written
    /// only by this shard.
    shard(uint32_t index, const shard_options& o, shard_shared& shared, table::holder::reader&& reader,
          shard_counters& counters);
    ~shard();
    shard(const shard&) = delete;
    shard& operator=(const shard&) = delete;

    /// Sets up ring, listeners, pools and sockets. On the shard's thread.
    bool init(std::string& err);
    /// Empty pipes each shard keeps for the kernel TLS path's splices.
    static constexpr size_t pipe_pool_cap = 256;
    /// Connected UDP sockets per upstream (see _upstream_fds).
    static constexpr uint32_t upstream_sockets = 8;
    /// The loop; returns after stop once open work finished or the drain deadline passed.
    void run() noexcept;
    /// Wakes the loop (any thread), e.g. after setting shared.stop.
    void wake() noexcept;

    const shard_counters& counters() const noexcept { return _c; }
    uint32_t index() const noexcept { return _index; }

private:
    // ---- connections ----
    enum class conn_state : uint8_t { free, handshake, open, closing };
    enum class conn_kind : uint8_t { dot, proxy };
    /// Where a proxy tunnel is after the handshake.
    enum class tunnel_state : uint8_t {
        sniffing,   ///< reading the first plaintext bytes for a destination name
        connecting, ///< to the service's backend
        forwarding, ///< client <-> backend
        parked,     ///< a service endpoint's idle dial-out connection, waiting for a client
        awaiting,   ///< a client tunnel waiting for its service endpoint to park a connection
        paired,     ///< client <-> service endpoint, both in TLS here
    };
    struct conn {
        uint32_t generation = 1;
        uint32_t live_pos = 0;     ///< where this connection is in _live while not free
        int fd = -1;
        conn_state state = conn_state::free;
        bool recv_armed = false;
        bool send_inflight = false;
        bool paused = false;       ///< stopped reading until output drains
        bool peer_eof = false;
        bool starved = false;      ///< in _starved
        uint32_t chunk = chunk_pool::none;
        uint32_t endpoint = table::none; ///< id in the current table
        uint32_t cin_len = 0;    ///< ciphertext received, not yet taken by TLS
        uint32_t stage = chunk_pool::none; ///< plaintext answers waiting to be encrypted
        uint32_t stage_off = 0;  ///< stage bytes [stage_off, stage_len) are still to encrypt
        uint32_t stage_len = 0;
        uint32_t rx_len = 0;     ///< bytes of the DoT frame being assembled
        uint32_t out_sent = 0;   ///< bytes of out already sent
        uint32_t queries = 0;
        uint32_t pending_upstream = 0;
        uint64_t deadline_ms = 0;
        uint64_t opened_ms = 0;
        tls::out_buffer out;
        tls::session tls;
        uint8_t cn_len = 0;
        char cn[64];
        std::string_view cn_view() const noexcept { return {cn, cn_len}; }

        // ---- the proxy's side of a tunnel (unused by DoT) ----
        conn_kind kind = conn_kind::dot;
        tunnel_state tunnel = tunnel_state::sniffing;
        bool connect_inflight = false;
        bool brecv_armed = false;
        bool bsend_inflight = false;
        bool client_eof = false;      ///< client sent close_notify or FIN: no more upstream bytes
        bool backend_eof = false;     ///< the service closed its side
        bool backend_shut = false;    ///< we shut the service's write side
        bool client_shut = false;     ///< we sent close_notify and FIN to the client
        uint8_t attempts = 0;         ///< backends tried
        uint8_t name_len = 0;
        int backend_fd = -1;
        uint32_t service = table::none;
        uint32_t c2b_len = 0;         ///< plaintext from the client for the service
        uint32_t c2b_sent = 0;
        bool opened = false;          ///< counted in tunnels_opened (the client's side of a pair only)
        uint64_t bytes_up = 0;        ///< client -> service, plaintext
        uint64_t bytes_down = 0;      ///< service -> client, plaintext
        char name[254];               ///< the destination name (SNI, Host or inner SNI)
        char service_cn[64];
        uint8_t service_cn_len = 0;
        sockaddr_in6 backend_addr{};  ///< lives until the connect completes
        net::timeout_spec connect_timeout{};
        uint32_t peer = table::none;  ///< the other connection of a paired tunnel
        /// How fast this tunnel's client answers what we send it (loop-turn
        /// time from a send's completion to the next bytes from the client,
        /// smoothed): the shard polls for the client only if it is quick.
        uint32_t client_reply_us = unknown_reply;
        uint64_t client_wait_from_us = 0; ///< a send completed at; 0: not waiting
        bool shut_pending = false;    ///< paired: the peer is done; send close_notify + FIN when drained
        // ---- kernel TLS ----
        bool ktls_wanted = false;     ///< draining user-space TLS to hand the socket to the kernel
        bool ktls = false;            ///< the kernel owns the record layer; WOLFSSL is freed
        bool exact_recv = false;      ///< a plain recv completing a partial record is in flight
        bool recv_cancelling = false; ///< the provided-buffer recv is being cancelled for kTLS
        tls::ktls::record_tracker tracker; ///< record boundaries of what wolfSSL consumed
        /// One direction of a kTLS tunnel: bytes move src -> pipe -> dst with splice.
        struct pipe_dir {
            int r = -1;
            int w = -1;
            uint32_t in_pipe = 0;
            bool poll_armed = false;
        };
        pipe_dir up;   ///< client -> service
        pipe_dir down; ///< service -> client
        std::string_view name_view() const noexcept { return {name, name_len}; }
    };

    // A connection's buffers, taken from per-shard pools only while it has
    // bytes in them: chunk = [out | cin | rx], stage = its own chunk.
    static constexpr uint32_t record_plaintext = 8 * 1024; ///< answers are encrypted in records of this much
    /// Two full TLS records: one being sent while the next is encrypted behind it.
    static constexpr uint32_t out_capacity = 34 * 1024;
    /// One receive buffer's worth: wolfSSL takes what it is given (a partial
    /// record waits inside it), so cin only holds what we chose not to read yet.
    static constexpr uint32_t cin_capacity = 17 * 1024;
    static constexpr uint32_t rx_capacity = 4 * 1024 + 2; ///< queries over 4 KiB close the connection
    /// Proxy: the same region holds plaintext from the client for the service.
    static constexpr uint32_t c2b_capacity = 64 * 1024 - out_capacity - cin_capacity;
    static constexpr uint32_t chunk_size = 64 * 1024;
    static constexpr uint32_t stage_capacity = 64 * 1024;
    /// Upstream queries one connection may have outstanding before it stops
    /// reading more: bounds what answers can pile up (16 x 4 KiB UDP answers).
    static constexpr uint32_t max_upstream_per_conn = 16;
    static constexpr uint32_t recv_buffer_size = 16 * 1024;
    /// Receive buffers are handed out by the kernel in ring order, so a
    /// receive lands in the buffer used longest ago: a pool bigger than the
    /// core's L2 cache makes every receive a cache miss. Every buffer goes back
    /// in the loop turn that filled it, so a small pool is enough; a turn that
    /// runs out re-arms those receives when it ends (_starved).
    /// Client reads (DoT queries touch a few lines of theirs): 256 x 16 KiB.
    static constexpr uint32_t client_recv_buffers = 256;
    /// Service reads, whole records of plaintext to encrypt: 64 x 16 KiB,
    /// 1 MiB. Measured on the 1-tunnel bulk download: 1,024 buffers cost
    /// ~12% more CPU per MB than 64 (bench/README.md).
    static constexpr uint32_t service_recv_buffers = 64;
    /// The ALPN a service endpoint asks for when it dials out to park a connection.
    static constexpr std::string_view service_alpn = "ztdns-service/1";
    static constexpr uint16_t group_tcp = 0;
    static constexpr uint16_t group_udp = 1;
    static constexpr uint16_t group_service = 2;
    static constexpr uint32_t unknown_reply = 0xffffffffu;

    std::byte* stage_of(conn& c) noexcept { return _stages.at(c.stage); }
    std::byte* cin_of(conn& c) noexcept { return _chunks.at(c.chunk) + out_capacity; }
    std::byte* rx_of(conn& c) noexcept { return _chunks.at(c.chunk) + out_capacity + cin_capacity; }
    std::byte* c2b_of(conn& c) noexcept { return rx_of(c); }
    net::tag tag_of(net::op o, uint32_t i) const noexcept { return {o, _conns[i].generation, i}; }

    void on_completion(const net::completion& c) noexcept;
    void on_accept(const net::completion& c) noexcept;
    void on_recv(uint32_t i, const net::completion& c) noexcept;
    void on_send(uint32_t i, const net::completion& c) noexcept;
    /// The common start of a send's completion: clears its in-flight flag,
    /// drops one for a reused slot, finishes a closing connection, closes on an
    /// error. Returns the connection when the handler goes on.
    conn* settle_send(uint32_t i, const net::completion& c, bool conn::*inflight) noexcept;
    void on_tick() noexcept;
    /// Counts a tunnel as open (connected to its service, or paired with a
    /// service endpoint: then only on the client's side); close_conn counts
    /// it closed.
    void note_tunnel_opened(conn& c) noexcept {
        c.opened = true;
        ++_c.tunnels_opened;
        ++_c.tunnels_active;
    }
    /// Listeners whose multishot accept ended with the fd table full
    /// (EMFILE/ENFILE): re-armed at the next tick, not at once (it would fail
    /// again on the same queued connection, turn after turn).
    std::vector<uint32_t> _accept_paused;
    uint64_t _fd_full_logged_ms = 0;    ///< that warning goes out once a second at most
    uint64_t _slots_full_logged_ms = 0; ///< as does the one for a full connection slab
    /// True at most once a second per `last_ms` (and then sets it): for warnings a flood would repeat.
    bool once_a_second(uint64_t& last_ms) noexcept {
        if (_now_ms < last_ms + 1000) {
            return false;
        }
        last_ms = _now_ms;
        return true;
    }

    // ---- the TLS proxy (proxy.cc) ----
    /// After the handshake: SNI, else the first plaintext bytes, name the destination.
    void proxy_start(uint32_t i) noexcept;
    /// Decrypts what the client sent into c2b (and sniffs while sniffing).
    void proxy_from_client(uint32_t i) noexcept;
    void proxy_route(uint32_t i) noexcept;
    void proxy_connect(uint32_t i) noexcept;
    void on_connect(uint32_t i, const net::completion& c) noexcept;
    void on_backend_recv(uint32_t i, const net::completion& c) noexcept;
    void on_backend_send(uint32_t i, const net::completion& c) noexcept;
    void proxy_send_backend(uint32_t i) noexcept;
    void proxy_arm_backend_recv(uint32_t i) noexcept;
    /// Sends what is in out; propagates half-closes once everything is through.
    void proxy_flush(uint32_t i) noexcept;
    void proxy_refuse(uint32_t i, std::string_view why) noexcept;
    /// After a new table: may this tunnel still exist?
    bool proxy_still_allowed(const conn& c, const table::table& t) const noexcept;
    // ---- service endpoints: dial-out connections that carry client tunnels (proxy.cc) ----
    void proxy_park(uint32_t i) noexcept;
    /// Joins client tunnel `i` to parked service connection `j`.
    void pair(uint32_t i, uint32_t j) noexcept;
    /// Moves conn `i`'s plaintext into its peer's TLS, as room allows.
    void pair_push(uint32_t i) noexcept;
    void pair_flush(uint32_t i) noexcept;
    std::vector<uint32_t> _parked;   ///< parked service connections on this shard
    std::vector<uint32_t> _awaiting; ///< client tunnels waiting for one

    // ---- kernel TLS (ktls.cc) ----
    /// Drains user-space TLS to a record boundary, then installs kTLS.
    void ktls_try(uint32_t i) noexcept;
    /// Moves bytes of one direction with splice until a socket would block.
    void ktls_pump(uint32_t i, bool up) noexcept;
    void on_ktls_poll(uint32_t i, bool up, const net::completion& c) noexcept;
    bool pipe_acquire(conn::pipe_dir& d) noexcept;
    void pipe_release(conn::pipe_dir& d) noexcept;
    std::vector<std::pair<int, int>> _pipes; ///< idle pipes for splice, reused
    /// A proxy tunnel's client side completed a receive (`from_client`) or a
    /// send: poll before sleeping when an answer is expected soon.
    void note_tunnel_traffic(const net::completion& cq, bool from_client) noexcept;
    /// Closes the service-side socket (a direct descriptor or a plain fd).
    void close_backend(conn& c) noexcept;
    bool _direct = false; ///< service-side sockets are direct descriptors (net::ring)
    /// A backend that failed is skipped for a while (passive health), and
    /// one the active checks marked down (shard_shared::health).
    bool backend_down(const sockaddr_in6& a) const noexcept;
    void mark_backend_down(const sockaddr_in6& a) noexcept;
    void on_table_switch() noexcept;

    bool ensure_chunk(conn& c) noexcept;
    void maybe_release_chunk(conn& c) noexcept;
    void arm_recv(uint32_t i) noexcept;
    /// A receive of connection i ended with ENOBUFS: arm it again after this turn.
    void starve(uint32_t i) noexcept;
    void rearm_starved() noexcept;
    /// Feeds cin to TLS and does what it allows: handshake, then queries.
    void advance(uint32_t i) noexcept;
    /// Called around a handshake step (public-key work: 0.1 ms with ECDSA,
    /// 3 ms signing with RSA 4096). Requests queued in a loop turn are
    /// submitted when it ends; a turn that runs several handshakes would hold
    /// each client's flight until the last is done. Once `early_submit_us`
    /// have passed since the turn's first handshake step (or the last early
    /// submit), what is queued goes now; what that completes waits for the
    /// next turn (ring::wait() takes only what was there when it woke).
    void submit_if_turn_long() noexcept;
    static constexpr uint64_t early_submit_us = 100;
    bool authenticate(uint32_t i) noexcept;
    /// Sends the alert saying why a verified client is refused, then closes
    /// (logging `why` as close_conn does).
    void refuse(uint32_t i, tls::refusal alert, const char* why = nullptr) noexcept;
    /// Reads DoT frames out of TLS and answers them while output has room.
    void read_queries(uint32_t i) noexcept;
    void handle_query(uint32_t i, std::span<const std::byte> msg) noexcept;
    /// The nearest zone enclosing `zone` that `endpoint` may see, or none.
    static uint32_t visible_parent_zone(const table::table& t, uint32_t zone, uint32_t endpoint) noexcept;
    /// The endpoint's exchange (catalog.cc): PTR `_catalog._ztdns.<server name>`
    /// lists the zones this CN may see; SRV `_ztdns._tcp.<zone>` gives a
    /// service's port. Returns the answer's size, or 0 when the question is not
    /// one of these (or names a zone the CN may not see: then it is answered as
    /// any other name, so nothing leaks).
    size_t answer_catalog(const conn& c, const dns::query& q, std::span<std::byte> out) noexcept;
    /// Resumes reading queries of a paused connection when it can take answers again.
    void maybe_resume(uint32_t i) noexcept;
    /// Starts sending what of out is unsent unless a send is in flight; true
    /// when a send is in flight afterwards (the caller waits for it).
    bool send_out(uint32_t i) noexcept;
    /// Appends one framed answer to stage (false when it does not fit).
    bool stage_answer(conn& c, std::span<const std::byte> msg) noexcept;
    /// Encrypts stage into out and sends, if nothing is in flight.
    void flush(uint32_t i) noexcept;
    void close_conn(uint32_t i, const char* why) noexcept;
    void maybe_free(uint32_t i) noexcept;

    // ---- upstream forwarding ----
    struct pending {
        uint32_t conn = 0;
        uint32_t conn_generation = 0;
        uint16_t client_id = 0;
        uint16_t our_id = 0;      ///< random (RFC 5452), and indexes _slot_of_id
        uint16_t socket = 0;      ///< the _upstream_fds entry the query left by (its answer comes back there)
        uint16_t at = 0;          ///< its place in _pending_slots
        bool answered = false;    ///< the clients have their answer (or SERVFAIL); the slot may wait for its TCP retry
        uint16_t key_len = 0;
        uint16_t question_len = 0;
        uint64_t deadline_ms = 0;
        uint64_t started_us = 0;
        uint64_t key_hash = 0;
        uint32_t waiters = none32; ///< first of the identical queries riding on this one
        uint16_t query_flags = 0;  ///< the client's header flags (RD, CD), for a retry over TCP
        bool pad = false;          ///< the client's query carried Padding: so does its answer (RFC 8467)
        // A retry over TCP after a truncated UDP answer: one connection, one query.
        enum class tcp_phase : uint8_t { none, connecting, sending, receiving, abandoned };
        tcp_phase tcp = tcp_phase::none;
        int tcp_fd = -1;
        uint32_t tcp_buf = chunk_pool::none; ///< a stage chunk: [2-byte length | message]
        uint32_t tcp_len = 0;                ///< bytes received (or to send)
        uint32_t tcp_generation = 0;
        sockaddr_storage tcp_addr{};
        net::timeout_spec tcp_timeout{};
        std::byte key[dns_cache::max_key];
        std::byte question[dns::max_name_wire_size + 4];
    };
    /// A client waiting for an answer that is already being fetched.
    struct waiter {
        uint32_t conn = 0;
        uint32_t conn_generation = 0;
        uint16_t client_id = 0;
        uint32_t next = none32;
        uint64_t started_us = 0;
        bool pad = false;
    };
    static constexpr uint32_t none32 = 0xffffffffu;
    void forward(uint32_t i, const dns::query& q, std::span<const std::byte> msg,
                 std::span<const std::byte> key) noexcept;
    /// In-flight queries by cache key (open addressing, backward-shift delete),
    /// so identical queries share one upstream request.
    uint32_t inflight_find(std::span<const std::byte> key, uint64_t h) const noexcept;
    void inflight_insert(uint16_t slot) noexcept;
    void inflight_erase(uint16_t slot) noexcept;
    /// Frees an answered pending slot (and its TCP retry's socket and buffer).
    void finish_pending(uint16_t slot) noexcept;
    void on_upstream(const net::completion& c) noexcept;
    /// Retries a truncated answer's question over TCP to the same upstream.
    void upstream_tcp_start(uint16_t slot, uint32_t upstream) noexcept;
    void on_upstream_tcp(const net::completion& c) noexcept;
    /// Delivers an upstream answer to the client and every waiter, caches it, frees the slot.
    void upstream_answer(uint16_t slot, std::span<std::byte> resp, bool cache) noexcept;
    /// Answers the slot's clients with a SERVFAIL made from its question.
    void answer_servfail(uint16_t slot) noexcept;
    /// Gives `msg` (under each client's id) to the slot's client and waiters.
    /// The slot leaves the in-flight index and its waiters are detached
    /// first, and paused connections resume only after the last delivery: a
    /// query a resumed client sends again would otherwise join a list already
    /// walked (and never be answered), or overwrite `msg` in scratch.
    void answer_pending(uint16_t slot, std::span<std::byte> msg) noexcept;
    /// Stages a forwarded query's answer for connection `conn` if it is still
    /// the same one (`pad`: padded again first, RFC 8467); a connection paused
    /// for want of room is noted in _resume.
    void deliver(uint32_t conn_index, uint32_t conn_generation, std::span<const std::byte> msg, uint64_t started_us,
                 bool pad) noexcept;
    /// Connections (index, generation) that answer_pending resumes when it is done.
    std::vector<std::pair<uint32_t, uint32_t>> _resume;
    void count_rcode(std::span<const std::byte> msg) noexcept;

    uint32_t _index;
    shard_options _o;
    shard_shared& _shared;
    table::holder::reader _reader;
    std::unique_ptr<net::ring> _ring;
    std::vector<int> _listeners;
    uint32_t _dot_listeners = 0; ///< _listeners[0, n) are DoT, the rest the proxy's
    std::unique_ptr<conn[]> _conns;
    std::vector<uint32_t> _free_conns;
    /// The connections not free, in no order: the tick and table switches
    /// visit these, not every slot (a slot is ~700 bytes; 16,384 of them
    /// scanned ten times a second would sweep the cache for nothing).
    std::vector<uint32_t> _live;
    /// Calls f(i, conn) for each connection not free. Backwards, because f
    /// may close connections: freeing one moves the last into its place, and
    /// the last ones were visited already (one may be visited twice, never
    /// skipped).
    template <typename F>
    void for_each_live(F&& f) {
        for (size_t k = _live.size(); k-- > 0;) {
            if (k < _live.size()) {
                f(_live[k], _conns[_live[k]]);
            }
        }
    }
    /// Connections whose receive found no free buffer this turn (ENOBUFS):
    /// re-armed when the turn ends, once its buffers are back.
    std::vector<uint32_t> _starved;
    chunk_pool _chunks;
    chunk_pool _stages;
    dns_cache _cache;
    std::vector<uint16_t> _per_endpoint; ///< open connections per endpoint id of the current table
    std::unique_ptr<pending[]> _pending;
    /// Every slot once: the first _pending_used are in use, the rest free.
    /// The tick's deadline check walks only those in use: a pass over all
    /// 4,096 (3 MiB) stalled the shard for ~1.4 ms every tick.
    std::unique_ptr<uint16_t[]> _pending_slots;
    uint32_t _pending_used = 0;
    static constexpr uint32_t pending_capacity = 4096;
    static constexpr uint32_t inflight_capacity = 8192; ///< twice the pending slots: short probes
    std::unique_ptr<uint16_t[]> _inflight;
    static constexpr uint16_t inflight_empty = 0xffff;
    std::unique_ptr<waiter[]> _waiters;
    std::vector<uint32_t> _free_waiters;
    static constexpr uint32_t waiter_capacity = 16384;
    /// upstream_sockets connected UDP sockets per upstream, each from its own
    /// port the kernel picked: a query leaves by a random one under a random
    /// id, so an off-path forger must guess both (RFC 5452).
    std::vector<int> _upstream_fds;
    uint32_t _next_upstream = 0;
    /// The pending slot of each upstream query id in use, or inflight_empty.
    std::unique_ptr<uint16_t[]> _slot_of_id;
    uint64_t _random_state = 0;
    /// splitmix64, seeded from getrandom(2): unpredictable off the machine,
    /// which is all a query id needs.
    uint64_t next_random() noexcept {
        uint64_t z = (_random_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    int _wake_fd = -1;
    uint64_t _wake_buf = 0;
    net::timeout_spec _tick{0, 100'000'000};
    uint64_t _now_ms = 0;
    uint64_t _now_us = 0;
    /// Since when this turn's queued requests wait for their submission (see
    /// submit_if_turn_long()); 0: no handshake step yet this turn.
    uint64_t _queued_since_us = 0;
    uint32_t _open = 0;
    bool _stopping = false;
    uint64_t _stop_deadline_ms = 0;
    struct down_entry {
        uint64_t key = 0;
        uint64_t until_ms = 0;
    };
    static constexpr uint32_t down_capacity = 256;
    down_entry _down[down_capacity];
    uint32_t _rand = 0x9e3779b9u;
    shard_counters& _c;
    log::buffered _log;
    std::unique_ptr<std::byte[]> _scratch; ///< one answer being built
    std::unique_ptr<std::byte[]> _padded;  ///< a forwarded answer being padded
};

} // namespace zt::dataplane
