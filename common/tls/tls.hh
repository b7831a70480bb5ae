// wolfSSL behind our own buffers: the TLS library never touches a socket.
// Ciphertext goes in through feed(), comes out through output(); the session
// answers done / want_read / want_write / closed / failed. Used by the data
// plane shards (one session per connection, owned by its shard), the endpoint
// and the load generators.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

struct WOLFSSL_CTX;
struct WOLFSSL;

namespace zt::tls {

/// Initializes wolfSSL once per process. Any thread; idempotent.
void init() noexcept;

/// True when this wolfSSL was built with AES-NI (the scripts/setup build).
bool has_aesni() noexcept;

/// Signatures made by a context's CA key that this thread verified, kept so
/// that the next handshake with the same certificate skips the ECDSA
/// verification (~38 us of the server's ~190 us). A hit needs the same CA
/// public key, the same digest of the signed certificate body and the same
/// signature bytes (a SHA-256 fingerprint of the three): that is the same
/// mathematical fact, so a hit can only say what verifying again would.
/// Expiry, the chain and everything else are still checked by wolfSSL on
/// every handshake, and CN and revocation by the caller. Only ECDSA and only
/// signatures made with a CA key: a peer's CertificateVerify is made with
/// its own key (and even a CA key's would sign a fresh transcript, which
/// never hits). Needs wolfSSL's PK callbacks (scripts/setup); without them
/// (-Dsystem_wolfssl) every signature is verified. 1,024 entries per thread,
/// two-way set-associative.
struct verify_memo_stats {
    uint64_t hits = 0;
    uint64_t misses = 0; ///< CA signatures verified (and remembered when valid)
};
/// This thread's counts.
verify_memo_stats verify_memo() noexcept;
/// True when this build memoizes (wolfSSL has PK callbacks).
bool verify_memo_available() noexcept;

/// Which side and what peers must show.
struct context_options {
    bool server = true;
    std::string cert_pem;    ///< our certificate (chain)
    std::string key_pem;     ///< its private key
    std::string ca_pem;      ///< the CA that peer certificates must chain to
    bool require_peer_cert = true;
    bool allow_tls12 = false; ///< TLS 1.3 only unless set
};

/// A WOLFSSL_CTX: certificates, CA, verification mode and cipher suites.
/// Created on the control/main thread, then only read; shared by shards.
/// It must outlive every session started on it (sessions point at its CA
/// keys); the data plane keeps each context until the process ends.
class context {
public:
    /// nullptr-like (valid() false) and `err` set when the PEMs do not load.
    static context create(const context_options& o, std::string& err);
    context() noexcept;
    context(context&& o) noexcept;
    context& operator=(context&& o) noexcept;
    ~context();
    bool valid() const noexcept { return _ctx != nullptr; }
    WOLFSSL_CTX* raw() const noexcept { return _ctx; }

    /// The CA public keys (SubjectPublicKeyInfo DER) whose signatures are memoized.
    struct ca_keys;
    const ca_keys* memo_keys() const noexcept { return _ca_keys.get(); }

private:
    WOLFSSL_CTX* _ctx = nullptr;
    std::unique_ptr<ca_keys> _ca_keys;
};

enum class status : uint8_t {
    done,       ///< the call completed
    want_read,  ///< feed more ciphertext, then call again
    want_write, ///< send output() first, then call again
    closed,     ///< the peer sent close_notify
    failed,     ///< fatal error; close the connection
};

/// Why we refuse a peer whose certificate verified (TLS AlertDescription,
/// RFC 8446 section 6).
enum class refusal : uint8_t {
    revoked = 44,       ///< certificate_revoked
    access_denied = 49, ///< access_denied: not allowed here, or over a limit
};

/// What a fatal alert from the peer said, as a phrase ("certificate
/// revoked"), or nullptr for an alert without a name here.
const char* alert_phrase(int description) noexcept;

/// The bytes a session wants sent. The session writes ciphertext into a
/// caller-owned buffer (so the shard decides where memory lives).
struct out_buffer {
    std::byte* data = nullptr;
    uint32_t capacity = 0;
    uint32_t length = 0;
};

/// One TLS connection. Not thread-safe; lives and dies on one thread.
class session {
public:
    session() = default;
    session(const session&) = delete;
    session& operator=(const session&) = delete;
    ~session() { reset(); }

    /// Starts a session on `ctx` writing ciphertext to `out`. False on
    /// allocation failure. `sni` (client side) is sent as server name.
    bool start(const context& ctx, out_buffer* out, std::string_view sni = {}) noexcept;
    /// Frees the WOLFSSL object (no close_notify). Safe to call twice.
    void reset() noexcept;
    bool active() const noexcept { return _ssl != nullptr; }

    /// Makes `in` the ciphertext wolfSSL reads next. wolfSSL copies what it
    /// takes; input_left() says how much of `in` it has not taken yet.
    void feed(std::span<const std::byte> in) noexcept { _in = in; }
    size_t input_left() const noexcept { return _in.size(); }

    status handshake() noexcept;
    /// Decrypts into `plain`; `n` is set to the bytes produced.
    status read(std::span<std::byte> plain, size_t& n) noexcept;
    /// Encrypts `plain` into the out buffer; `n` is set to the bytes taken.
    status write(std::span<const std::byte> plain, size_t& n) noexcept;
    /// Queues close_notify.
    void shutdown() noexcept;
    /// Queues a fatal alert saying why the peer is refused, after a handshake
    /// in which its certificate verified; the connection then closes.
    void refuse(refusal why) noexcept;
    /// The description of the last alert the peer sent (-1 if none).
    int peer_alert() const noexcept;

    /// Plaintext bytes decrypted and buffered inside wolfSSL.
    int pending() const noexcept;
    /// The verified peer certificate's CN (empty if none); copied at handshake.
    std::string_view peer_cn() const noexcept { return {_cn, _cn_len}; }
    /// The SNI the client sent (server side), empty if none.
    std::string_view sni() const noexcept;
    /// Offers (client) or accepts (server) ALPN protocols, comma-separated;
    /// a server continues without ALPN when the client offers none of them.
    bool set_alpn(std::string_view protocols) noexcept;
    /// The ALPN protocol agreed on in the handshake, empty if none.
    std::string_view alpn() const noexcept;
    /// Why the last call failed (wolfSSL's reason string).
    const char* error_string() const noexcept;
    /// "TLSv1.3" etc., and the cipher suite's IANA name ("TLS_AES_128_GCM_SHA256"), whichever names the wolfSSL
    /// build uses itself (Debian's says "TLS13-AES128-GCM-SHA256").
    const char* version() const noexcept;
    const char* cipher() const noexcept;
    WOLFSSL* raw() const noexcept { return _ssl; }

    /// wolfSSL IO callbacks (installed on every context).
    static int on_recv(WOLFSSL*, char* buf, int sz, void* ctx);
    static int on_send(WOLFSSL*, char* buf, int sz, void* ctx);

private:
    status map(int ret) noexcept;
    void capture_peer() noexcept;

    WOLFSSL* _ssl = nullptr;
    out_buffer* _out = nullptr;
    std::span<const std::byte> _in;
    int _last_error = 0;
    uint8_t _cn_len = 0;
    char _cn[64];
};

} // namespace zt::tls
