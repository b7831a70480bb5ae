// The endpoint's DoT client: a small pool of persistent mutual-TLS connections to the appliance's DoT server(s),
// queries pipelined on them with 2-byte framing (RFC 7858), answers matched by message id in any order. With several
// servers the connections spread over them, and one that failed is passed over for a while (address_choice.hh). A
// connection that fails is reconnected with exponential backoff; its queries move to another connection once.
// Every query ends exactly once, with the answer or with a failure (the stub then says SERVFAIL): at its
// deadline, or at once when no connection is up and none is being made. Single-threaded.
#pragma once

#include "common/net/socket.hh"
#include "common/tls/tls.hh"
#include "tools/endpoint/address_choice.hh"
#include "tools/endpoint/loop.hh"
#include "tools/endpoint/tls_stream.hh"

#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace zt::endpoint {

class dot_pool {
public:
    /// The answer (its id is the query's), or an empty span when the query failed. std::function: one per query
    /// on a client machine, not a data-plane hot path.
    using callback = std::function<void(std::span<const std::byte> answer)>;

    /// `servers`: the bundle's DoT server addresses; outlives the pool.
    dot_pool(loop& l, const tls::context& ctx, address_choice& servers, std::string server_name, unsigned connections);
    ~dot_pool();

    /// Opens the connections.
    void start();
    /// Sends `query` (a complete, parsed-OK DNS query); `cb` runs exactly once, possibly before submit returns.
    void submit(std::span<const std::byte> query, ms_t deadline, callback cb);
    /// Deadlines, reconnects; returns when it next needs to run.
    ms_t tick(ms_t now);
    /// A connection is open.
    bool up() const noexcept;

private:
    struct request {
        std::vector<std::byte> msg; ///< as sent, with our id
        uint16_t client_id = 0;
        size_t q_off = 0, q_len = 0; ///< the question inside msg
        ms_t deadline = 0;
        ms_t sent_ms = 0;
        callback cb;
        int tries = 0;
        int conn = -1; ///< index of the connection it is in flight on
        uint16_t wire_id = 0;
    };
    enum class conn_state : uint8_t { down, connecting, ready };
    struct conn : io_handler {
        dot_pool* pool = nullptr;
        int index = 0;
        size_t server = 0; ///< which of the servers it is (or was last) connected to
        conn_state state = conn_state::down;
        std::unique_ptr<tls_stream> st;
        std::vector<std::byte> tx;                       ///< framed queries not yet encrypted
        byte_buffer rx{2 * 65540};                       ///< plaintext answers being framed
        std::unordered_map<uint16_t, uint64_t> inflight; ///< wire id → request
        uint16_t next_id = 1;
        ms_t deadline = 0;     ///< connect + handshake
        ms_t next_attempt = 0; ///< while down
        ms_t opened_ms = 0;
        ms_t last_rx_ms = 0;
        bool answered = false; ///< an answer came on this connection since it opened
        bool busy = false; ///< inside pump()
        void on_io(uint32_t) override { pool->pump(*this); }
    };

    void connect(conn& c, ms_t now);
    void pump(conn& c);
    void conn_down(conn& c, const std::string& why);
    /// What a connection's end says about the appliance refusing this endpoint, or `why` as it is.
    std::string refusal(const conn& c, bool was_ready, const std::string& why) const;
    void dispatch(uint64_t serial);
    void send_on(conn& c, uint64_t serial);
    void on_answer(conn& c, std::span<const std::byte> msg);
    void complete(uint64_t serial, std::span<const std::byte> answer);
    void drain_waiting();
    void fail_waiting_if_hopeless();
    bool any_connecting() const noexcept;
    conn* best_ready() noexcept;

    loop& _loop;
    const tls::context& _ctx;
    address_choice& _servers;
    std::string _server_name;
    std::vector<std::unique_ptr<conn>> _conns;
    std::unordered_map<uint64_t, request> _requests;
    std::deque<uint64_t> _waiting;
    uint64_t _next_serial = 1;
    unsigned _failures = 0;
    ms_t _last_attempt = 0;
    bool _was_up = false;
    bool _reported_down = false;
};

} // namespace zt::endpoint
