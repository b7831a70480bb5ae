// wolfSSL with custom IO callbacks over caller buffers (see tls.hh).
#include "common/tls/tls.hh"

#include "common/tls/alloc.hh"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfio.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace zt::tls {

void init() noexcept {
    static std::once_flag once;
    std::call_once(once, [] {
        install_pooled_allocator();
        wolfSSL_Init();
    });
}

bool has_aesni() noexcept {
#ifdef WOLFSSL_AESNI
    return true;
#else
    return false;
#endif
}

// ---- memoized CA signatures ----

struct context::ca_keys {
    std::vector<std::vector<unsigned char>> keys;
    bool contains(const unsigned char* der, unsigned size) const noexcept {
        return std::any_of(keys.begin(), keys.end(), [&](const std::vector<unsigned char>& k) {
            return k.size() == size && std::memcmp(k.data(), der, size) == 0;
        });
    }
};

namespace {

/// One thread's verified CA signatures: 1,024 SHA-256 fingerprints (32 KiB)
/// in 512 sets of two, a new one replacing the set's older entry. An empty
/// entry is all zeros, which no fingerprint is. Per thread, so shards share
/// nothing.
struct verified_table {
    using print = std::array<unsigned char, WC_SHA256_DIGEST_SIZE>;
    static constexpr size_t sets = 512;
    std::array<std::array<print, 2>, sets> prints{};
    std::array<uint8_t, sets> older{}; ///< the way to replace next
    verify_memo_stats stats;

    static size_t set_of(const print& f) noexcept {
        uint64_t x;
        std::memcpy(&x, f.data(), sizeof x);
        return x % sets;
    }
    bool has(const print& f) const noexcept {
        size_t s = set_of(f);
        return prints[s][0] == f || prints[s][1] == f;
    }
    void add(const print& f) noexcept {
        size_t s = set_of(f);
        prints[s][older[s]] = f;
        older[s] ^= 1;
    }
};

thread_local verified_table t_verified;

#ifdef HAVE_PK_CALLBACKS
/// SHA-256 over (key, digest, signature), each prefixed with its length.
bool fingerprint(const unsigned char* key, unsigned key_size, const unsigned char* hash, unsigned hash_size,
                 const unsigned char* sig, unsigned sig_size, verified_table::print& out) {
    wc_Sha256 h;
    if (wc_InitSha256(&h) != 0) {
        return false;
    }
    bool ok = true;
    for (auto [p, n] : {std::pair{key, key_size}, std::pair{hash, hash_size}, std::pair{sig, sig_size}}) {
        uint32_t len = n;
        ok = ok && wc_Sha256Update(&h, reinterpret_cast<const unsigned char*>(&len), sizeof len) == 0 &&
             wc_Sha256Update(&h, p, n) == 0;
    }
    ok = ok && wc_Sha256Final(&h, out.data()) == 0;
    wc_Sha256Free(&h);
    return ok;
}

/// wolfSSL's ECDSA verification hook, for certificate signatures and
/// CertificateVerify alike: verifies as wolfSSL would, and remembers valid
/// signatures made by one of the context's CA keys.
int verify_ecc(WOLFSSL*, const unsigned char* sig, unsigned sig_size, const unsigned char* hash, unsigned hash_size,
               const unsigned char* key_der, unsigned key_size, int* result, void* ctx) {
    *result = 0;
    const auto* ca = static_cast<const context::ca_keys*>(ctx);
    verified_table::print print;
    bool memo = ca && ca->contains(key_der, key_size) &&
                fingerprint(key_der, key_size, hash, hash_size, sig, sig_size, print);
    if (memo && t_verified.has(print)) {
        ++t_verified.stats.hits;
        *result = 1;
        return 0;
    }
    ecc_key key;
    if (wc_ecc_init(&key) != 0) {
        return MEMORY_E;
    }
    word32 idx = 0;
    int ret = wc_EccPublicKeyDecode(key_der, &idx, &key, key_size);
    if (ret == 0) {
        ret = wc_ecc_verify_hash(sig, sig_size, hash, hash_size, result, &key);
    }
    wc_ecc_free(&key);
    if (memo) {
        ++t_verified.stats.misses;
        if (ret == 0 && *result == 1) {
            t_verified.add(print);
        }
    }
    return ret;
}
#endif

/// The public key of every certificate in `pem`, as wolfSSL hands CA keys to
/// the verification hook (SubjectPublicKeyInfo DER).
std::unique_ptr<context::ca_keys> ca_public_keys(std::string_view pem) {
    auto out = std::make_unique<context::ca_keys>();
    constexpr std::string_view end_marker = "-----END CERTIFICATE-----";
    for (size_t at = 0;;) {
        size_t b = pem.find("-----BEGIN CERTIFICATE-----", at);
        size_t e = b == std::string_view::npos ? b : pem.find(end_marker, b);
        if (e == std::string_view::npos) {
            break;
        }
        at = e + end_marker.size();
        std::string_view one = pem.substr(b, at - b);
        WOLFSSL_X509* x = wolfSSL_X509_load_certificate_buffer(reinterpret_cast<const unsigned char*>(one.data()),
                                                               static_cast<int>(one.size()), WOLFSSL_FILETYPE_PEM);
        if (!x) {
            continue;
        }
        int size = 0;
        if (wolfSSL_X509_get_pubkey_buffer(x, nullptr, &size) == WOLFSSL_SUCCESS && size > 0) {
            std::vector<unsigned char> key(static_cast<size_t>(size));
            if (wolfSSL_X509_get_pubkey_buffer(x, key.data(), &size) == WOLFSSL_SUCCESS) {
                key.resize(static_cast<size_t>(size));
                out->keys.push_back(std::move(key));
            }
        }
        wolfSSL_X509_free(x);
    }
    return out;
}

} // namespace

verify_memo_stats verify_memo() noexcept { return t_verified.stats; }

bool verify_memo_available() noexcept {
#ifdef HAVE_PK_CALLBACKS
    return true;
#else
    return false;
#endif
}

context::context() noexcept = default;

context::context(context&& o) noexcept : _ctx(o._ctx), _ca_keys(std::move(o._ca_keys)) { o._ctx = nullptr; }

context& context::operator=(context&& o) noexcept {
    if (this != &o) {
        if (_ctx) {
            wolfSSL_CTX_free(_ctx);
        }
        _ctx = o._ctx;
        o._ctx = nullptr;
        _ca_keys = std::move(o._ca_keys);
    }
    return *this;
}

context::~context() {
    if (_ctx) {
        wolfSSL_CTX_free(_ctx);
    }
}

context context::create(const context_options& o, std::string& err) {
    init();
    context c;
    WOLFSSL_METHOD* method = o.server ? wolfSSLv23_server_method() : wolfSSLv23_client_method();
    c._ctx = wolfSSL_CTX_new(method);
    if (!c._ctx) {
        err = "wolfSSL_CTX_new failed";
        return c;
    }
    auto fail = [&](std::string why) {
        err = std::move(why);
        wolfSSL_CTX_free(c._ctx);
        c._ctx = nullptr;
        return std::move(c);
    };
    if (wolfSSL_CTX_SetMinVersion(c._ctx, o.allow_tls12 ? WOLFSSL_TLSV1_2 : WOLFSSL_TLSV1_3) != WOLFSSL_SUCCESS) {
        return fail("cannot set the minimum TLS version");
    }
    // AEAD suites only; ECDSA and RSA certificates both work.
    const char* suites = "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256:"
                         "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                         "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
                         "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
    if (wolfSSL_CTX_set_cipher_list(c._ctx, suites) != WOLFSSL_SUCCESS) {
        return fail("cannot set the cipher suites");
    }
    if (!o.cert_pem.empty()) {
        if (wolfSSL_CTX_use_certificate_chain_buffer(c._ctx, reinterpret_cast<const unsigned char*>(o.cert_pem.data()),
                                                     static_cast<long>(o.cert_pem.size())) != WOLFSSL_SUCCESS) {
            return fail("cannot load the certificate (not PEM?)");
        }
        if (wolfSSL_CTX_use_PrivateKey_buffer(c._ctx, reinterpret_cast<const unsigned char*>(o.key_pem.data()),
                                              static_cast<long>(o.key_pem.size()),
                                              WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
            return fail("cannot load the private key (not PEM, or encrypted?)");
        }
        if (wolfSSL_CTX_check_private_key(c._ctx) != WOLFSSL_SUCCESS) {
            return fail("the private key does not belong to the certificate");
        }
    }
    if (!o.ca_pem.empty()) {
        if (wolfSSL_CTX_load_verify_buffer(c._ctx, reinterpret_cast<const unsigned char*>(o.ca_pem.data()),
                                           static_cast<long>(o.ca_pem.size()),
                                           WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
            return fail("cannot load the CA certificate");
        }
#ifdef HAVE_PK_CALLBACKS
        c._ca_keys = ca_public_keys(o.ca_pem);
        wolfSSL_CTX_SetEccVerifyCb(c._ctx, &verify_ecc);
#endif
    }
    int mode = WOLFSSL_VERIFY_NONE;
    if (o.require_peer_cert) {
        mode = WOLFSSL_VERIFY_PEER | (o.server ? WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
    }
    wolfSSL_CTX_set_verify(c._ctx, mode, nullptr);
    // No resumption: every connection proves its certificate again, and a
    // revoked CN cannot come back on an old session.
    wolfSSL_CTX_set_session_cache_mode(c._ctx, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_NoTicketTLSv12(c._ctx);
    wolfSSL_CTX_no_ticket_TLSv13(c._ctx);
    wolfSSL_CTX_SetIORecv(c._ctx, &session::on_recv);
    wolfSSL_CTX_SetIOSend(c._ctx, &session::on_send);
    return c;
}

int session::on_recv(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto* s = static_cast<session*>(ctx);
    if (s->_in.empty()) {
        return WOLFSSL_CBIO_ERR_WANT_READ;
    }
    size_t n = std::min(s->_in.size(), static_cast<size_t>(sz));
    std::memcpy(buf, s->_in.data(), n);
    s->_in = s->_in.subspan(n);
    return static_cast<int>(n);
}

int session::on_send(WOLFSSL*, char* buf, int sz, void* ctx) {
    auto* s = static_cast<session*>(ctx);
    out_buffer* out = s->_out;
    uint32_t room = out->capacity - out->length;
    if (room == 0) {
        return WOLFSSL_CBIO_ERR_WANT_WRITE;
    }
    uint32_t n = std::min(room, static_cast<uint32_t>(sz));
    std::memcpy(out->data + out->length, buf, n);
    out->length += n;
    return static_cast<int>(n);
}

bool session::start(const context& ctx, out_buffer* out, std::string_view sni) noexcept {
    reset();
    _ssl = wolfSSL_new(ctx.raw());
    if (!_ssl) {
        return false;
    }
    _out = out;
    _in = {};
    _cn_len = 0;
    wolfSSL_SetIOReadCtx(_ssl, this);
    wolfSSL_SetIOWriteCtx(_ssl, this);
#ifdef HAVE_PK_CALLBACKS
    wolfSSL_SetEccVerifyCtx(_ssl, const_cast<context::ca_keys*>(ctx.memo_keys()));
#endif
    if (!sni.empty()) {
        wolfSSL_UseSNI(_ssl, WOLFSSL_SNI_HOST_NAME, sni.data(), static_cast<unsigned short>(sni.size()));
    }
    return true;
}

void session::reset() noexcept {
    if (_ssl) {
        wolfSSL_free(_ssl);
        _ssl = nullptr;
    }
}

status session::map(int ret) noexcept {
    if (ret > 0) {
        return status::done;
    }
    int e = wolfSSL_get_error(_ssl, ret);
    _last_error = e;
    switch (e) {
    case WOLFSSL_ERROR_WANT_READ:
        return status::want_read;
    case WOLFSSL_ERROR_WANT_WRITE:
        return status::want_write;
    case WOLFSSL_ERROR_ZERO_RETURN:
        return status::closed;
    default:
        return status::failed;
    }
}

void session::capture_peer() noexcept {
    _cn_len = 0;
    WOLFSSL_X509* peer = wolfSSL_get_peer_certificate(_ssl);
    if (!peer) {
        return;
    }
    if (const char* cn = wolfSSL_X509_get_subjectCN(peer)) {
        size_t n = strnlen(cn, sizeof _cn);
        // A CN that does not fit is not one of ours: leave it empty (refused).
        if (n < sizeof _cn) {
            std::memcpy(_cn, cn, n);
            _cn_len = static_cast<uint8_t>(n);
        }
    }
    wolfSSL_X509_free(peer);
}

status session::handshake() noexcept {
    int ret = wolfSSL_is_server(_ssl) ? wolfSSL_accept(_ssl) : wolfSSL_connect(_ssl);
    status s = map(ret);
    if (s == status::done) {
        capture_peer();
    }
    return s;
}

status session::read(std::span<std::byte> plain, size_t& n) noexcept {
    n = 0;
    int ret = wolfSSL_read(_ssl, plain.data(), static_cast<int>(std::min<size_t>(plain.size(), 1 << 30)));
    if (ret > 0) {
        n = static_cast<size_t>(ret);
        return status::done;
    }
    return map(ret);
}

status session::write(std::span<const std::byte> plain, size_t& n) noexcept {
    n = 0;
    if (plain.empty()) {
        return status::done;
    }
    int ret = wolfSSL_write(_ssl, plain.data(), static_cast<int>(std::min<size_t>(plain.size(), 1 << 30)));
    if (ret > 0) {
        n = static_cast<size_t>(ret);
        return status::done;
    }
    return map(ret);
}

void session::shutdown() noexcept {
    if (_ssl) {
        wolfSSL_shutdown(_ssl);
    }
}

void session::refuse(refusal why) noexcept {
#ifdef ZT_SYSTEM_WOLFSSL
    (void)why; // Debian's wolfSSL has no public call to send an alert: the refusal is a bare close
#else
    if (_ssl) {
        wolfSSL_zt_send_fatal_alert(_ssl, static_cast<int>(why)); // scripts/wolfssl/send-alert.patch
    }
#endif
}

int session::peer_alert() const noexcept {
    WOLFSSL_ALERT_HISTORY h{};
    if (!_ssl || wolfSSL_get_alert_history(_ssl, &h) != WOLFSSL_SUCCESS || h.last_rx.level != alert_fatal) {
        return -1;
    }
    return h.last_rx.code;
}

const char* alert_phrase(int description) noexcept {
    switch (description) {
    case 42:
        return "bad certificate";
    case 43:
        return "unsupported certificate";
    case 44:
        return "certificate revoked";
    case 45:
        return "certificate expired";
    case 46:
        return "certificate unknown";
    case 48:
        return "unknown CA";
    case 49:
        return "access denied";
    case 116:
        return "certificate required";
    default:
        return nullptr;
    }
}

int session::pending() const noexcept { return _ssl ? wolfSSL_pending(_ssl) : 0; }

std::string_view session::sni() const noexcept {
    if (!_ssl) {
        return {};
    }
    void* data = nullptr;
    unsigned short len = wolfSSL_SNI_GetRequest(_ssl, WOLFSSL_SNI_HOST_NAME, &data);
    return len ? std::string_view(static_cast<const char*>(data), len) : std::string_view{};
}

bool session::set_alpn(std::string_view protocols) noexcept {
    char list[128];
    if (!_ssl || protocols.size() >= sizeof list) {
        return false;
    }
    std::memcpy(list, protocols.data(), protocols.size());
    list[protocols.size()] = '\0';
    return wolfSSL_UseALPN(_ssl, list, static_cast<unsigned>(protocols.size()), WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) ==
           WOLFSSL_SUCCESS;
}

std::string_view session::alpn() const noexcept {
    char* name = nullptr;
    unsigned short size = 0;
    if (!_ssl || wolfSSL_ALPN_GetProtocol(_ssl, &name, &size) != WOLFSSL_SUCCESS || !name) {
        return {};
    }
    return {name, size};
}

const char* session::error_string() const noexcept { return wolfSSL_ERR_reason_error_string(_last_error); }
const char* session::version() const noexcept { return _ssl ? wolfSSL_get_version(_ssl) : ""; }
const char* session::cipher() const noexcept {
    if (!_ssl) {
        return "";
    }
    const int suite = wolfSSL_get_current_cipher_suite(_ssl);
    const char* iana = suite < 0 ? nullptr
                                 : wolfSSL_get_cipher_name_iana_from_suite(static_cast<unsigned char>(suite >> 8),
                                                                           static_cast<unsigned char>(suite & 0xff));
    return iana ? iana : wolfSSL_get_cipher(_ssl);
}

} // namespace zt::tls
