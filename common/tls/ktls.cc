// Kernel TLS installation from a wolfSSL session, and the control-message
// records of a kTLS socket (see ktls.hh and docs on the fast path).
#include "common/tls/ktls.hh"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

namespace zt::tls::ktls {

namespace {

constexpr uint16_t v13 = 0x0304;
constexpr uint16_t v12 = 0x0303;

// As HAProxy's known_ciphers[]: a suite qualifies only when listed here.
constexpr std::array<cipher, 8> g_known{{
    {0x1301, v13, TLS_CIPHER_AES_GCM_128, 16, "TLS_AES_128_GCM_SHA256"},
    {0x1302, v13, TLS_CIPHER_AES_GCM_256, 32, "TLS_AES_256_GCM_SHA384"},
    {0xC02B, v12, TLS_CIPHER_AES_GCM_128, 16, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
    {0xC02C, v12, TLS_CIPHER_AES_GCM_256, 32, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
    {0xC02F, v12, TLS_CIPHER_AES_GCM_128, 16, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
    {0xC030, v12, TLS_CIPHER_AES_GCM_256, 32, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
    {0x009E, v12, TLS_CIPHER_AES_GCM_128, 16, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"},
    {0x009F, v12, TLS_CIPHER_AES_GCM_256, 32, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"},
}};

// The kernel's two AES-GCM structs differ only in the key size.
static_assert(sizeof(tls12_crypto_info_aes_gcm_128::salt) == 4 && sizeof(tls12_crypto_info_aes_gcm_128::iv) == 8);
static_assert(sizeof(tls12_crypto_info_aes_gcm_256::key) == 32 && sizeof(tls12_crypto_info_aes_gcm_256::rec_seq) == 8);

void put_be64(uint8_t* p, uint64_t v) noexcept {
    for (int i = 7; i >= 0; --i) {
        p[i] = static_cast<uint8_t>(v);
        v >>= 8;
    }
}

// volatile stores, so the compiler cannot drop a wipe of memory about to die.
void wipe_bytes(void* p, size_t n) noexcept {
    auto* b = static_cast<volatile uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
        b[i] = 0;
    }
}

bool fill_direction(direction_keys& d, const cipher& c, const unsigned char* key, const unsigned char* iv,
                    uint64_t seq) noexcept {
    if (key == nullptr || iv == nullptr) {
        return false;
    }
    std::memcpy(d.key, key, c.key_size);
    std::memcpy(d.salt, iv, 4);
    if (c.tls_version == v13) {
        std::memcpy(d.iv, iv + 4, 8);
    } else {
        put_be64(d.iv, seq);
    }
    put_be64(d.rec_seq, seq);
    d.seq = seq;
    return true;
}

/// The kernel's struct for one direction, wiped when it goes away.
struct crypto_info {
    union {
        tls12_crypto_info_aes_gcm_128 g128;
        tls12_crypto_info_aes_gcm_256 g256;
    };
    socklen_t size = 0;
    crypto_info(const cipher& c, const direction_keys& d) noexcept {
        std::memset(&g256, 0, sizeof g256);
        if (c.kernel_id == TLS_CIPHER_AES_GCM_128) {
            g128.info.version = c.tls_version == v13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
            g128.info.cipher_type = TLS_CIPHER_AES_GCM_128;
            std::memcpy(g128.key, d.key, sizeof g128.key);
            std::memcpy(g128.salt, d.salt, 4);
            std::memcpy(g128.iv, d.iv, 8);
            std::memcpy(g128.rec_seq, d.rec_seq, 8);
            size = sizeof g128;
        } else {
            g256.info.version = c.tls_version == v13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
            g256.info.cipher_type = TLS_CIPHER_AES_GCM_256;
            std::memcpy(g256.key, d.key, sizeof g256.key);
            std::memcpy(g256.salt, d.salt, 4);
            std::memcpy(g256.iv, d.iv, 8);
            std::memcpy(g256.rec_seq, d.rec_seq, 8);
            size = sizeof g256;
        }
    }
    crypto_info(const crypto_info&) = delete;
    crypto_info& operator=(const crypto_info&) = delete;
    ~crypto_info() { wipe_bytes(&g256, sizeof g256); }
    const void* data() const noexcept { return &g256; }
};

bool no_ktls_errno(int e) noexcept {
    return e == ENOENT || e == ENOPROTOOPT || e == EOPNOTSUPP;
}

std::string errno_text(int e) {
    return std::string(strerrordesc_np(e) ? strerrordesc_np(e) : "unknown error");
}

/// A connected loopback TCP pair; -1s when it cannot be made.
struct tcp_pair {
    int a = -1, b = -1;
    std::string error;
    tcp_pair() {
        int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (l < 0) {
            error = "socket: " + errno_text(errno);
            return;
        }
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof sa;
        if (::bind(l, reinterpret_cast<sockaddr*>(&sa), sl) != 0 || ::listen(l, 1) != 0 ||
            ::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &sl) != 0) {
            error = "loopback listen: " + errno_text(errno);
            ::close(l);
            return;
        }
        a = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (a < 0 || ::connect(a, reinterpret_cast<sockaddr*>(&sa), sl) != 0) {
            error = "loopback connect: " + errno_text(errno);
        } else {
            b = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
            if (b < 0) {
                error = "loopback accept: " + errno_text(errno);
            }
        }
        ::close(l);
    }
    tcp_pair(const tcp_pair&) = delete;
    tcp_pair& operator=(const tcp_pair&) = delete;
    ~tcp_pair() {
        if (a >= 0) {
            ::close(a);
        }
        if (b >= 0) {
            ::close(b);
        }
    }
    bool ok() const noexcept { return a >= 0 && b >= 0; }
};

} // namespace

probe_result probe() {
    probe_result r;
    tcp_pair p;
    if (!p.ok()) {
        r.reason = "cannot make a loopback TCP connection to probe kTLS (" + p.error + ")";
        return r;
    }
    if (::setsockopt(p.a, IPPROTO_TCP, TCP_ULP, "tls", 3) != 0) {
        int e = errno;
        r.reason = "setsockopt TCP_ULP \"tls\": " + errno_text(e) +
                   (no_ktls_errno(e) ? " (kernel without CONFIG_TLS, or the tls module cannot be loaded)" : "");
        return r;
    }
    // A dummy key: proves that gcm(aes) exists for both directions. The
    // socket is closed right after; nothing is ever sent with it.
    cipher c = g_known[0];
    direction_keys d{};
    crypto_info ci(c, d);
    for (int dir : {TLS_TX, TLS_RX}) {
        if (::setsockopt(p.a, SOL_TLS, dir, ci.data(), ci.size) != 0) {
            r.reason = std::string("TCP_ULP \"tls\" works but setsockopt SOL_TLS ") +
                       (dir == TLS_TX ? "TLS_TX" : "TLS_RX") + " with AES-128-GCM failed: " + errno_text(errno) +
                       " (gcm(aes) missing from the kernel?)";
            return r;
        }
    }
    r.available = true;
    r.reason = "kernel TLS available (TCP_ULP \"tls\", TLS_TX and TLS_RX with AES-GCM)";
    return r;
}

std::span<const cipher> known_ciphers() noexcept {
    return g_known;
}

const cipher* find_cipher(WOLFSSL* ssl) noexcept {
    if (ssl == nullptr || !wolfSSL_is_init_finished(ssl)) {
        return nullptr;
    }
    const int version = wolfSSL_version(ssl);
    const int suite = wolfSSL_get_current_cipher_suite(ssl);
    for (const cipher& c : g_known) {
        if (c.suite != suite || c.tls_version != version) {
            continue;
        }
        // Belt and braces: wolfSSL's own idea of the record protection.
        const int iv_size = c.tls_version == v13 ? 12 : 4;
        if (wolfSSL_GetBulkCipher(ssl) != wolfssl_aes_gcm || wolfSSL_GetKeySize(ssl) != c.key_size ||
            wolfSSL_GetIVSize(ssl) != iv_size || wolfSSL_GetAeadMacSize(ssl) != 16) {
            return nullptr;
        }
        return &c;
    }
    return nullptr;
}

bool eligible(WOLFSSL* ssl) noexcept {
    return find_cipher(ssl) != nullptr;
}

session_keys::session_keys(session_keys&& o) noexcept : c(o.c), error(o.error), tx(o.tx), rx(o.rx) {
    o.wipe();
}

void session_keys::wipe() noexcept {
    wipe_bytes(&tx, sizeof tx);
    wipe_bytes(&rx, sizeof rx);
}

session_keys export_keys(WOLFSSL* ssl, bool server_side) noexcept {
    session_keys k;
    const cipher* c = find_cipher(ssl);
    if (c == nullptr) {
        k.error = "the session's version and cipher are not in the kTLS table (TLS 1.2/1.3 AES-GCM only)";
        return k;
    }
    const int side = wolfSSL_GetSide(ssl);
    if (side != (server_side ? WOLFSSL_SERVER_END : WOLFSSL_CLIENT_END)) {
        k.error = "server_side does not match the wolfSSL session's side";
        return k;
    }
    word64 tx_seq = 0, rx_seq = 0;
    // Both getters return !seq (1 for sequence 0), negative only on bad args.
    if (wolfSSL_GetSequenceNumber(ssl, &tx_seq) < 0 || wolfSSL_GetPeerSequenceNumber(ssl, &rx_seq) < 0) {
        k.error = "wolfSSL did not report the sequence numbers";
        return k;
    }
    const unsigned char* tx_key = server_side ? wolfSSL_GetServerWriteKey(ssl) : wolfSSL_GetClientWriteKey(ssl);
    const unsigned char* tx_iv = server_side ? wolfSSL_GetServerWriteIV(ssl) : wolfSSL_GetClientWriteIV(ssl);
    const unsigned char* rx_key = server_side ? wolfSSL_GetClientWriteKey(ssl) : wolfSSL_GetServerWriteKey(ssl);
    const unsigned char* rx_iv = server_side ? wolfSSL_GetClientWriteIV(ssl) : wolfSSL_GetServerWriteIV(ssl);
    if (!fill_direction(k.tx, *c, tx_key, tx_iv, tx_seq) || !fill_direction(k.rx, *c, rx_key, rx_iv, rx_seq)) {
        k.wipe();
        k.error = "wolfSSL did not expose the write keys (built without --enable-atomicuser?)";
        return k;
    }
    k.c = c;
    return k;
}

install_status install(int fd, WOLFSSL* ssl, bool server_side, std::string& err) {
    if (ssl != nullptr && wolfSSL_pending(ssl) > 0) {
        err = "kTLS install: wolfSSL still holds decrypted bytes (drain wolfSSL_read first)";
        return install_status::fallback;
    }
    session_keys k = export_keys(ssl, server_side);
    if (!k.ok()) {
        err = std::string("kTLS install: ") + k.error;
        return install_status::fallback;
    }
    if (::setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 3) != 0) {
        err = "kTLS install: setsockopt TCP_ULP \"tls\": " + errno_text(errno);
        return install_status::fallback;
    }
    // With only the ULP attached the socket still carries plain bytes, so a
    // failed TLS_TX leaves it usable by wolfSSL; after TLS_TX it is not.
    {
        crypto_info tx(*k.c, k.tx);
        if (::setsockopt(fd, SOL_TLS, TLS_TX, tx.data(), tx.size) != 0) {
            err = "kTLS install: setsockopt TLS_TX: " + errno_text(errno);
            return install_status::fallback;
        }
    }
    {
        crypto_info rx(*k.c, k.rx);
        if (::setsockopt(fd, SOL_TLS, TLS_RX, rx.data(), rx.size) != 0) {
            err = "kTLS install: setsockopt TLS_RX: " + errno_text(errno);
            return install_status::broken;
        }
    }
    return install_status::installed;
}

ssize_t recv_record(int fd, void* buf, size_t len, uint8_t& record_type) noexcept {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint8_t))];
    iovec iov{buf, len};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    record_type = record_application_data;
    ssize_t n = ::recvmsg(fd, &msg, 0);
    if (n < 0) {
        return n;
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE && c->cmsg_len >= CMSG_LEN(1)) {
            record_type = *CMSG_DATA(c);
        }
    }
    return n;
}

record_kind classify(uint8_t record_type, std::span<const std::byte> payload) noexcept {
    switch (record_type) {
    case record_application_data:
        return record_kind::data;
    case record_alert:
        if (payload.size() != 2) {
            return record_kind::malformed;
        }
        return payload[1] == std::byte{0} ? record_kind::close_notify : record_kind::alert;
    case record_handshake:
        if (payload.empty()) {
            return record_kind::malformed;
        }
        return payload[0] == std::byte{24} ? record_kind::key_update : record_kind::handshake;
    default:
        return record_kind::malformed;
    }
}

bool send_close_notify(int fd) noexcept {
    uint8_t alert[2] = {1, 0}; // warning, close_notify
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint8_t))]{};
    iovec iov{alert, sizeof alert};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_TLS;
    c->cmsg_type = TLS_SET_RECORD_TYPE;
    c->cmsg_len = CMSG_LEN(sizeof(uint8_t));
    *CMSG_DATA(c) = record_alert;
    ssize_t n;
    do {
        n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(sizeof alert);
}

void record_tracker::consume(std::span<const std::byte> bytes) noexcept {
    while (!bytes.empty()) {
        if (_body_left > 0) {
            size_t n = std::min<size_t>(_body_left, bytes.size());
            _body_left -= static_cast<uint32_t>(n);
            bytes = bytes.subspan(n);
            if (_body_left == 0) {
                ++_records;
            }
            continue;
        }
        _header[_header_len++] = static_cast<uint8_t>(bytes[0]);
        bytes = bytes.subspan(1);
        if (_header_len == sizeof _header) {
            _header_len = 0;
            _body_left = static_cast<uint32_t>(_header[3]) << 8 | _header[4];
            if (_body_left == 0) {
                ++_records;
            }
        }
    }
}

uint32_t record_tracker::needed() const noexcept {
    if (_header_len > 0) {
        return sizeof _header - _header_len;
    }
    return _body_left;
}

} // namespace zt::tls::ktls
