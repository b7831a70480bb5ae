// Kernel TLS: hands an established wolfSSL session's record layer to the
// kernel (TCP_ULP "tls", TLS_TX + TLS_RX), so the proxy can splice payload
// without it entering user space; plus the non-data records (alerts,
// KeyUpdate) that a kTLS socket delivers through control messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <sys/types.h>

struct WOLFSSL;

namespace zt::tls::ktls {

/// What probe() found.
struct probe_result {
    bool available = false;
    std::string reason; ///< one line for the start-up log, either way
};

/// Whether this kernel can do kTLS: TCP_ULP "tls" on a connected loopback
/// TCP pair, then TLS_TX and TLS_RX with an AES-128-GCM dummy key (so a
/// kernel with the ULP but without gcm(aes) also says no). ENOENT,
/// ENOPROTOOPT and EOPNOTSUPP mean "no kTLS here"; any other failure is
/// reported too. Needs loopback up. Start-up only (makes sockets, may make
/// the kernel load the tls module); any thread; never throws for a "no".
probe_result probe();

/// TLS record content types (RFC 8446 5.1).
inline constexpr uint8_t record_alert = 21;
inline constexpr uint8_t record_handshake = 22;
inline constexpr uint8_t record_application_data = 23;

/// One entry of the known-cipher table: only these are handed to the kernel.
struct cipher {
    uint16_t suite;       ///< IANA cipher suite number, e.g. 0x1301
    uint16_t tls_version; ///< 0x0304 (TLS 1.3) or 0x0303 (TLS 1.2)
    uint16_t kernel_id;   ///< TLS_CIPHER_AES_GCM_128 or _256 (linux/tls.h)
    uint8_t key_size;     ///< 16 or 32
    const char* name;     ///< IANA name
};

/// The table: TLS 1.3 and TLS 1.2 (ECDHE, DHE, RSA key exchange) with
/// AES-128-GCM and AES-256-GCM. Nothing else (ChaCha20, CCM, CBC) qualifies.
std::span<const cipher> known_ciphers() noexcept;

/// The table entry for this session's negotiated version and suite, or
/// nullptr when kTLS must not be used (other cipher, other version, wolfSSL
/// key sizes not as expected, handshake not finished). Any thread that may
/// touch `ssl`.
const cipher* find_cipher(WOLFSSL* ssl) noexcept;

/// find_cipher(ssl) != nullptr.
bool eligible(WOLFSSL* ssl) noexcept;

/// One direction's crypto state, laid out as the kernel's
/// tls12_crypto_info_aes_gcm_{128,256} wants it. TLS 1.3: salt = the
/// 12-byte write IV's bytes 0-3, iv = bytes 4-11. TLS 1.2: salt = the 4-byte
/// implicit IV, iv = the big-endian sequence number (the explicit nonce the
/// kernel starts from and then increments per record; wolfSSL's own
/// explicit nonces start at a random value, so they cannot collide in
/// practice). rec_seq = the big-endian sequence number of the next record
/// in that direction.
struct direction_keys {
    uint8_t key[32];
    uint8_t salt[4];
    uint8_t iv[8];
    uint8_t rec_seq[8];
    uint64_t seq = 0; ///< rec_seq as a number (for logs and tests)
};

/// Both directions. Key bytes are zeroed when this goes away.
struct session_keys {
    const cipher* c = nullptr;   ///< nullptr when the export failed
    const char* error = nullptr; ///< why it failed (static string)
    direction_keys tx{};         ///< what we send with
    direction_keys rx{};         ///< what we receive with
    session_keys() = default;
    session_keys(const session_keys&) = delete;
    session_keys& operator=(const session_keys&) = delete;
    session_keys(session_keys&& o) noexcept;
    ~session_keys() { wipe(); }
    void wipe() noexcept;
    bool ok() const noexcept { return c != nullptr; }
};

/// Copies keys, IVs and sequence numbers out of wolfSSL (no syscalls):
/// the server sends with the server write key and receives with the client
/// write key, the client the other way round; tx sequence from
/// wolfSSL_GetSequenceNumber, rx from wolfSSL_GetPeerSequenceNumber.
/// `server_side` must match wolfSSL's own idea of the side.
session_keys export_keys(WOLFSSL* ssl, bool server_side) noexcept;

/// What install() did.
enum class install_status : uint8_t {
    installed, ///< TLS_TX and TLS_RX are set: the kernel owns the record layer
    fallback,  ///< nothing changed on the socket: keep using wolfSSL
    broken,    ///< the socket is half-converted: close the connection
};

/// Hands the record layer of `fd` to the kernel: export_keys(), then
/// TCP_ULP "tls", TLS_TX, TLS_RX; the key copies are wiped before return.
/// After `installed` the WOLFSSL object is no longer needed (free it
/// without wolfSSL_shutdown) and plain recv/send/splice on `fd` carry
/// plaintext. `err` is set when the result is not `installed`.
///
/// Preconditions (the caller's, not checkable here): the handshake is
/// finished; every byte wolfSSL already produced was sent; every byte read
/// from `fd` was given to wolfSSL and consumed (wolfSSL_read until it wants
/// input and wolfSSL_pending() is 0, and a partial record completed from the
/// socket first: see record_tracker), so that the next byte in the socket
/// starts the record whose sequence number wolfSSL_GetPeerSequenceNumber
/// reports. A wrong receive sequence shows up later as EBADMSG from recv.
/// `fd` must be a real descriptor (not an io_uring fixed file). Any thread
/// that owns both `fd` and `ssl`.
install_status install(int fd, WOLFSSL* ssl, bool server_side, std::string& err);

/// Reads one record's worth (at most `len` bytes) from a kTLS socket with
/// recvmsg and the TLS_GET_RECORD_TYPE control message: what plain recv
/// refuses with EIO (and splice with EINVAL) when the next record is not
/// application data. Returns the byte count (0: the peer closed TCP without
/// close_notify) or -1 with errno set; `record_type` is the record's content
/// type (23 data, 21 alert, 22 handshake). Data and non-data records never
/// mix in one call. Any thread that owns `fd`.
ssize_t recv_record(int fd, void* buf, size_t len, uint8_t& record_type) noexcept;

/// What a received record means to a proxy.
enum class record_kind : uint8_t {
    data,         ///< application data: forward it
    close_notify, ///< alert close_notify: turn into a FIN towards the backend
    alert,        ///< any other alert (fatal or not): close the tunnel
    key_update,   ///< TLS 1.3 KeyUpdate: the 6.1 kernel cannot follow it; close and count
    handshake,    ///< another post-handshake message (NewSessionTicket, ...)
    malformed,    ///< truncated or unknown content type
};

/// Classifies a record read by recv_record(). Pure; bounds-checked.
record_kind classify(uint8_t record_type, std::span<const std::byte> payload) noexcept;

/// Sends an alert record close_notify (level warning, description 0) with
/// sendmsg and TLS_SET_RECORD_TYPE = 21. True when the kernel took it;
/// false with errno set (EAGAIN on a full non-blocking socket: try again
/// when it is writable). Any thread that owns `fd`.
bool send_close_notify(int fd) noexcept;

/// Follows TLS record framing over the ciphertext handed to wolfSSL, so the
/// caller knows how many more bytes complete the record wolfSSL is in the
/// middle of. wolfSSL asks its receive callback for exactly one record
/// header, then exactly that record's body; the bytes it has taken but not
/// yet processed are therefore the head of one partial record. Before
/// install(): read exactly needed() bytes from the socket (repeat until 0),
/// give them to wolfSSL, drain it, and the socket sits on a record boundary.
/// Feed it every byte wolfSSL consumed since the start of the connection
/// (or since the handshake finished: wolfSSL stops reading exactly at the
/// end of the peer's Finished record). Not thread-safe; no allocation.
class record_tracker {
public:
    /// Bytes wolfSSL took from its input, in order.
    void consume(std::span<const std::byte> bytes) noexcept;
    /// Bytes still missing from the current record: 0 on a record boundary;
    /// inside a header, the rest of the header (ask again after it).
    uint32_t needed() const noexcept;
    /// Complete records seen so far.
    uint64_t records() const noexcept { return _records; }

private:
    uint8_t _header[5]{};
    uint8_t _header_len = 0;
    uint32_t _body_left = 0;
    uint64_t _records = 0;
};

} // namespace zt::tls::ktls
