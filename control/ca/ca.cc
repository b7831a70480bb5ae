// The built-in CA. Keys, RNG, hashing, PEM and signatures come from wolfCrypt;
// the TBSCertificate is DER-encoded here (see encode_tbs for why).
#include "control/ca/ca.hh"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/settings.h>
// clang-format on
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>
#include <wolfssl/wolfcrypt/sha.h>
#include <wolfssl/wolfcrypt/sha256.h>
#include <wolfssl/wolfcrypt/wc_port.h>

#include <fmt/format.h>

#include <arpa/inet.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>

namespace zt::control::ca {

namespace detail {

secret_bytes& secret_bytes::operator=(secret_bytes&& o) noexcept {
    if (this != &o) {
        wipe();
        bytes = std::move(o.bytes);
    }
    return *this;
}

void secret_bytes::wipe() noexcept {
    if (!bytes.empty()) {
        explicit_bzero(bytes.data(), bytes.size());
    }
    bytes.clear();
}

} // namespace detail

namespace {

using bytes = std::vector<uint8_t>;
using bytes_view = std::span<const uint8_t>;
using detail::secret_bytes;

constexpr uint32_t max_days = 36500;
constexpr size_t max_name_bytes = 64;
constexpr size_t serial_bytes = 16;
constexpr int64_t backdate_seconds = 3600; // tolerate clients whose clock is a little behind
constexpr const char* ca_common_name = "ZeroTrust CA";

[[noreturn]] void fail(std::string_view what, int ret) {
    throw std::runtime_error(fmt::format("ca: {} failed: {} ({})", what, wc_GetErrorString(ret), ret));
}

[[noreturn]] void fail(std::string msg) {
    throw std::runtime_error("ca: " + std::move(msg));
}

// ---- DER writing ----------------------------------------------------------

void put_length(bytes& out, size_t n) {
    if (n < 0x80) {
        out.push_back(static_cast<uint8_t>(n));
        return;
    }
    uint8_t buf[sizeof(size_t)];
    size_t len = 0;
    for (size_t v = n; v != 0; v >>= 8) {
        buf[len++] = static_cast<uint8_t>(v & 0xff);
    }
    out.push_back(static_cast<uint8_t>(0x80 | len));
    while (len > 0) {
        out.push_back(buf[--len]);
    }
}

bytes tlv(uint8_t tag, bytes_view content) {
    bytes out;
    out.reserve(content.size() + 6);
    out.push_back(tag);
    put_length(out, content.size());
    out.insert(out.end(), content.begin(), content.end());
    return out;
}

bytes cat(std::initializer_list<bytes_view> parts) {
    bytes out;
    for (auto p : parts) {
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

bytes str_bytes(std::string_view s) {
    return bytes(s.begin(), s.end());
}

namespace tag {
constexpr uint8_t boolean = 0x01, integer = 0x02, bit_string = 0x03, octet_string = 0x04, oid = 0x06, utf8 = 0x0c,
                  utc_time = 0x17, generalized_time = 0x18, sequence = 0x30, set = 0x31, ctx0 = 0xa0, ctx3 = 0xa3,
                  key_id = 0x80, dns_name = 0x82, ip_address = 0x87;
} // namespace tag

namespace oid {
const bytes common_name{0x55, 0x04, 0x03};
const bytes organization{0x55, 0x04, 0x0a};
const bytes subject_key_id{0x55, 0x1d, 0x0e};
const bytes key_usage{0x55, 0x1d, 0x0f};
const bytes subject_alt_name{0x55, 0x1d, 0x11};
const bytes basic_constraints{0x55, 0x1d, 0x13};
const bytes authority_key_id{0x55, 0x1d, 0x23};
const bytes ext_key_usage{0x55, 0x1d, 0x25};
const bytes server_auth{0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
const bytes client_auth{0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};
} // namespace oid

// AlgorithmIdentifier of the signature, exactly as wc_SignCert_ex writes it
// outside the TBS (OpenSSL rejects a certificate whose two copies differ).
const bytes ecdsa_sha256_alg{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
const bytes rsa_sha256_alg{0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00};

// Name ::= SEQUENCE OF SET OF {type, UTF8String}: CN first, then O, as the
// seed guide prints it ("CN=c1234abcd5678, O=Client-Alice-Laptop").
bytes encode_name(std::string_view cn, std::string_view org) {
    auto rdn = [](const bytes& type, std::string_view value) {
        return tlv(tag::set, tlv(tag::sequence, cat({tlv(tag::oid, type), tlv(tag::utf8, str_bytes(value))})));
    };
    bytes rdns = rdn(oid::common_name, cn);
    if (!org.empty()) {
        auto o = rdn(oid::organization, org);
        rdns.insert(rdns.end(), o.begin(), o.end());
    }
    return tlv(tag::sequence, rdns);
}

// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
bytes encode_time(int64_t t) {
    time_t tt = static_cast<time_t>(t);
    struct tm tm {};
    if (gmtime_r(&tt, &tm) == nullptr) {
        fail(fmt::format("time {} cannot be represented", t));
    }
    int year = tm.tm_year + 1900;
    bool utc = year >= 1950 && year < 2050;
    char buf[32];
    size_t n = strftime(buf, sizeof(buf), utc ? "%y%m%d%H%M%SZ" : "%Y%m%d%H%M%SZ", &tm);
    return tlv(utc ? tag::utc_time : tag::generalized_time, bytes(buf, buf + n));
}

bytes extension(const bytes& type, bool critical, bytes_view value) {
    bytes crit = critical ? bytes{tag::boolean, 0x01, 0xff} : bytes{};
    return tlv(tag::sequence, cat({tlv(tag::oid, type), crit, tlv(tag::octet_string, value)}));
}

bytes key_usage_bits(uint8_t bits) {
    // DER BIT STRING: the first content byte counts the unused trailing bits.
    uint8_t unused = static_cast<uint8_t>(std::countr_zero(bits));
    return tlv(tag::bit_string, bytes{unused, bits});
}

constexpr uint8_t ku_digital_signature = 0x80, ku_key_encipherment = 0x20, ku_key_cert_sign = 0x04, ku_crl_sign = 0x02;

// ---- DER reading (our own certificates or a CA being loaded) --------------

struct tlv_view {
    uint8_t tag = 0;
    bytes_view whole;
    bytes_view value;
};

// Reads one TLV from the front of `in`; nullopt if malformed or truncated.
std::optional<tlv_view> read_tlv(bytes_view& in) {
    if (in.size() < 2 || (in[0] & 0x1f) == 0x1f) {
        return std::nullopt; // high tag numbers never occur in what we read
    }
    size_t pos = 1;
    size_t len = in[pos++];
    if (len & 0x80) {
        size_t n = len & 0x7f;
        if (n == 0 || n > 4 || in.size() < pos + n) {
            return std::nullopt;
        }
        len = 0;
        for (size_t i = 0; i < n; ++i) {
            len = (len << 8) | in[pos++];
        }
    }
    if (in.size() - pos < len) {
        return std::nullopt;
    }
    tlv_view t{in[0], in.subspan(0, pos + len), in.subspan(pos, len)};
    in = in.subspan(pos + len);
    return t;
}

tlv_view expect(bytes_view& in, uint8_t want, std::string_view what) {
    auto t = read_tlv(in);
    if (!t || t->tag != want) {
        fail(fmt::format("CA certificate is malformed: bad {}", what));
    }
    return *t;
}

struct cert_parts {
    bytes subject;               ///< whole Name TLV
    bytes spki;                  ///< whole SubjectPublicKeyInfo TLV
    std::optional<bytes> key_id; ///< SubjectKeyIdentifier extension, if any
};

cert_parts split_cert(bytes_view der) {
    auto cert = expect(der, tag::sequence, "Certificate");
    auto body = cert.value;
    auto tbs = expect(body, tag::sequence, "TBSCertificate").value;
    auto first = read_tlv(tbs);
    if (first && first->tag == tag::ctx0) {
        first = read_tlv(tbs); // skip the explicit version: the serial follows
    }
    if (!first || first->tag != tag::integer) {
        fail("CA certificate is malformed: bad serial");
    }
    expect(tbs, tag::sequence, "signature algorithm");
    expect(tbs, tag::sequence, "issuer");
    expect(tbs, tag::sequence, "validity");
    cert_parts parts;
    auto subject = expect(tbs, tag::sequence, "subject").whole;
    parts.subject.assign(subject.begin(), subject.end());
    auto spki = expect(tbs, tag::sequence, "subjectPublicKeyInfo").whole;
    parts.spki.assign(spki.begin(), spki.end());
    while (auto t = read_tlv(tbs)) {
        if (t->tag != tag::ctx3) {
            continue; // issuerUniqueID / subjectUniqueID
        }
        auto ext_wrap = t->value;
        auto exts = expect(ext_wrap, tag::sequence, "extensions").value;
        while (auto ext = read_tlv(exts)) {
            auto e = ext->value;
            auto type = read_tlv(e);
            if (!type || type->tag != tag::oid || !std::ranges::equal(type->value, bytes_view(oid::subject_key_id))) {
                continue;
            }
            auto value = read_tlv(e);
            if (value && value->tag == tag::boolean) {
                value = read_tlv(e);
            }
            if (!value || value->tag != tag::octet_string) {
                fail("CA certificate is malformed: bad subjectKeyIdentifier");
            }
            auto inner = value->value;
            auto id = expect(inner, tag::octet_string, "subjectKeyIdentifier");
            parts.key_id = bytes(id.value.begin(), id.value.end());
        }
    }
    return parts;
}

// RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value.
bytes key_id_of(bytes_view spki) {
    auto outer = expect(spki, tag::sequence, "subjectPublicKeyInfo").value;
    expect(outer, tag::sequence, "public key algorithm");
    auto bits = expect(outer, tag::bit_string, "public key").value;
    if (bits.empty()) {
        fail("public key is empty");
    }
    bytes id(WC_SHA_DIGEST_SIZE);
    if (int ret = wc_ShaHash(bits.data() + 1, static_cast<word32>(bits.size() - 1), id.data()); ret != 0) {
        fail("SHA-1 of the public key", ret);
    }
    return id;
}

// ---- wolfCrypt objects -----------------------------------------------------

class rng {
public:
    rng() {
        // Once per process; sets up CPU feature detection for the asm paths.
        static const int init = wolfCrypt_Init();
        if (init != 0) {
            fail("wolfCrypt_Init", init);
        }
        if (int ret = wc_InitRng(&_rng); ret != 0) {
            fail("wc_InitRng", ret);
        }
    }
    ~rng() { wc_FreeRng(&_rng); }
    rng(const rng&) = delete;
    rng& operator=(const rng&) = delete;
    WC_RNG* get() { return &_rng; }

    bytes block(size_t n) {
        bytes out(n);
        if (int ret = wc_RNG_GenerateBlock(&_rng, out.data(), static_cast<word32>(n)); ret != 0) {
            fail("wc_RNG_GenerateBlock", ret);
        }
        return out;
    }

private:
    WC_RNG _rng;
};

std::string to_hex(bytes_view b) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(b.size() * 2);
    for (uint8_t v : b) {
        out.push_back(digits[v >> 4]);
        out.push_back(digits[v & 0xf]);
    }
    return out;
}

// A positive 16-byte INTEGER whose first byte is non-zero, so its DER form is
// exactly these 16 bytes (no sign or padding byte).
bytes random_serial(rng& r) {
    bytes s = r.block(serial_bytes);
    s[0] &= 0x7f;
    if (s[0] == 0) {
        s[0] = 0x01;
    }
    return s;
}

struct ecc_free {
    void operator()(ecc_key* k) const noexcept {
        wc_ecc_free(k);
        delete k;
    }
};
struct rsa_free {
    void operator()(RsaKey* k) const noexcept {
        wc_FreeRsaKey(k);
        delete k;
    }
};
using ecc_ptr = std::unique_ptr<ecc_key, ecc_free>;
using rsa_ptr = std::unique_ptr<RsaKey, rsa_free>;

ecc_ptr new_ecc() {
    auto* k = new ecc_key{};
    if (int ret = wc_ecc_init(k); ret != 0) {
        delete k;
        fail("wc_ecc_init", ret);
    }
    return ecc_ptr(k);
}

rsa_ptr new_rsa() {
    auto* k = new RsaKey{};
    if (int ret = wc_InitRsaKey(k, nullptr); ret != 0) {
        delete k;
        fail("wc_InitRsaKey", ret);
    }
    return rsa_ptr(k);
}

// One private key, ECDSA or RSA, with what issuing needs from it.
class private_key {
public:
    static private_key generate(config::key_type type, rng& r) {
        private_key k;
        if (type == config::key_type::rsa4096) {
            k._rsa = new_rsa();
            if (int ret = wc_MakeRsaKey(k._rsa.get(), 4096, WC_RSA_EXPONENT, r.get()); ret != 0) {
                fail("RSA 4096 key generation", ret);
            }
        } else {
            k._ecc = new_ecc();
            if (int ret = wc_ecc_make_key_ex(r.get(), 32, k._ecc.get(), ECC_SECP256R1); ret != 0) {
                fail("ECDSA P-256 key generation", ret);
            }
        }
        return k;
    }

    // `der`: traditional (SEC1 / PKCS#1) DER. Returns nullopt if it is not a
    // key of that kind.
    static std::optional<private_key> decode(bool is_rsa, bytes_view der, rng& r) {
        private_key k;
        word32 idx = 0;
        if (is_rsa) {
            k._rsa = new_rsa();
            if (wc_RsaPrivateKeyDecode(der.data(), &idx, k._rsa.get(), static_cast<word32>(der.size())) != 0) {
                return std::nullopt;
            }
            return k;
        }
        k._ecc = new_ecc();
        if (wc_EccPrivateKeyDecode(der.data(), &idx, k._ecc.get(), static_cast<word32>(der.size())) != 0) {
            return std::nullopt;
        }
        // SEC1 keys may omit the public point; the SPKI and PKCS#8 need it.
        if (k._ecc->type == ECC_PRIVATEKEY_ONLY && wc_ecc_make_pub_ex(k._ecc.get(), nullptr, r.get()) != 0) {
            return std::nullopt;
        }
        return k;
    }

    bool is_rsa() const { return _rsa != nullptr; }

    bytes spki() const {
        bytes out(2048);
        int n = is_rsa() ? wc_RsaKeyToPublicDer(_rsa.get(), out.data(), static_cast<word32>(out.size()))
                         : wc_EccPublicKeyToDer(_ecc.get(), out.data(), static_cast<word32>(out.size()), 1);
        if (n <= 0) {
            fail("public key encoding", n);
        }
        out.resize(static_cast<size_t>(n));
        return out;
    }

    secret_bytes traditional_der() const {
        secret_bytes out(bytes(is_rsa() ? 8192 : 512));
        auto size = static_cast<word32>(out.bytes.size());
        int n = is_rsa() ? wc_RsaKeyToDer(_rsa.get(), out.bytes.data(), size)
                         : wc_EccKeyToDer(_ecc.get(), out.bytes.data(), size);
        if (n <= 0) {
            fail("private key encoding", n);
        }
        out.bytes.resize(static_cast<size_t>(n)); // shrinking keeps the buffer: still wiped
        return out;
    }

    // PKCS#8 "PRIVATE KEY" PEM: one format for both key types, read by
    // wolfSSL_CTX_use_PrivateKey_buffer and by `openssl pkey`.
    std::string pkcs8_pem() const {
        secret_bytes pkcs8;
        word32 len = 0;
        if (is_rsa()) {
            auto trad = traditional_der();
            wc_CreatePKCS8Key(nullptr, &len, trad.bytes.data(), static_cast<word32>(trad.bytes.size()), RSAk, nullptr,
                              0);
            pkcs8.bytes.resize(len);
            int n = wc_CreatePKCS8Key(pkcs8.bytes.data(), &len, trad.bytes.data(),
                                      static_cast<word32>(trad.bytes.size()), RSAk, nullptr, 0);
            if (n <= 0) {
                fail("PKCS#8 encoding", n);
            }
            pkcs8.bytes.resize(static_cast<size_t>(n));
        } else {
            wc_EccKeyToPKCS8(_ecc.get(), nullptr, &len);
            pkcs8.bytes.resize(len);
            int n = wc_EccKeyToPKCS8(_ecc.get(), pkcs8.bytes.data(), &len);
            if (n <= 0) {
                fail("PKCS#8 encoding", n);
            }
            pkcs8.bytes.resize(static_cast<size_t>(n));
        }
        return to_pem(pkcs8.bytes, PKCS8_PRIVATEKEY_TYPE);
    }

    const bytes& sig_alg() const { return is_rsa() ? rsa_sha256_alg : ecdsa_sha256_alg; }

    // Signs a complete TBSCertificate; returns the Certificate DER.
    bytes sign_cert(const bytes& tbs, rng& r) const {
        bytes buf(tbs.size() + 1024); // room for the algorithm, a 4096-bit signature and headers
        std::memcpy(buf.data(), tbs.data(), tbs.size());
        int n = is_rsa() ? wc_SignCert_ex(static_cast<int>(tbs.size()), CTC_SHA256wRSA, buf.data(),
                                          static_cast<word32>(buf.size()), RSA_TYPE, _rsa.get(), r.get())
                         : wc_SignCert_ex(static_cast<int>(tbs.size()), CTC_SHA256wECDSA, buf.data(),
                                          static_cast<word32>(buf.size()), ECC_TYPE, _ecc.get(), r.get());
        if (n <= 0) {
            fail("wc_SignCert_ex", n);
        }
        buf.resize(static_cast<size_t>(n));
        return buf;
    }

    // True if this key makes signatures that `spki` verifies: the one check
    // that catches a wrong key of the right type and an inconsistent key file.
    bool matches(bytes_view spki, rng& r) const {
        static constexpr std::string_view probe = "zerotrust-dns: CA key check";
        const auto* msg = reinterpret_cast<const byte*>(probe.data());
        word32 idx = 0;
        if (is_rsa()) {
            auto pub = new_rsa();
            if (wc_RsaPublicKeyDecode(spki.data(), &idx, pub.get(), static_cast<word32>(spki.size())) != 0) {
                return false;
            }
            bytes sig(static_cast<size_t>(wc_RsaEncryptSize(_rsa.get())));
            int n = wc_RsaSSL_Sign(msg, static_cast<word32>(probe.size()), sig.data(), static_cast<word32>(sig.size()),
                                   _rsa.get(), r.get());
            if (n <= 0) {
                return false;
            }
            bytes out(sig.size());
            int m = wc_RsaSSL_Verify(sig.data(), static_cast<word32>(n), out.data(), static_cast<word32>(out.size()),
                                     pub.get());
            return m == static_cast<int>(probe.size()) && std::memcmp(out.data(), msg, probe.size()) == 0;
        }
        auto pub = new_ecc();
        if (wc_EccPublicKeyDecode(spki.data(), &idx, pub.get(), static_cast<word32>(spki.size())) != 0) {
            return false;
        }
        byte hash[WC_SHA256_DIGEST_SIZE];
        if (wc_Sha256Hash(msg, static_cast<word32>(probe.size()), hash) != 0) {
            return false;
        }
        byte sig[ECC_MAX_SIG_SIZE];
        word32 sig_len = sizeof(sig);
        if (wc_ecc_sign_hash(hash, sizeof(hash), sig, &sig_len, r.get(), _ecc.get()) != 0) {
            return false;
        }
        int ok = 0;
        return wc_ecc_verify_hash(sig, sig_len, hash, sizeof(hash), &ok, pub.get()) == 0 && ok == 1;
    }

    static std::string to_pem(bytes_view der, int type) {
        std::string out(der.size() * 2 + 128, '\0');
        int n = wc_DerToPem(der.data(), static_cast<word32>(der.size()), reinterpret_cast<byte*>(out.data()),
                            static_cast<word32>(out.size()), type);
        if (n <= 0) {
            fail("PEM encoding", n);
        }
        out.resize(static_cast<size_t>(n));
        return out;
    }

private:
    ecc_ptr _ecc;
    rsa_ptr _rsa;
};

// ---- input checks ----------------------------------------------------------

void check_days(uint32_t days) {
    if (days == 0 || days > max_days) {
        fail(fmt::format("certificate validity must be 1..{} days, got {}", max_days, days));
    }
}

// An endpoint name goes into O=Client-<name>: 1..64 bytes of UTF-8 without
// C0/C1 control characters (they would corrupt logs and the web UI).
void check_endpoint_name(const std::string& name) {
    if (name.empty()) {
        fail("endpoint name is empty");
    }
    if (name.size() > max_name_bytes) {
        fail(fmt::format("endpoint name is longer than {} bytes ({} bytes)", max_name_bytes, name.size()));
    }
    const auto* p = reinterpret_cast<const uint8_t*>(name.data());
    const auto* end = p + name.size();
    while (p < end) {
        uint32_t cp = *p;
        size_t len = cp < 0x80 ? 1 : (cp & 0xe0) == 0xc0 ? 2 : (cp & 0xf0) == 0xe0 ? 3 : (cp & 0xf8) == 0xf0 ? 4 : 0;
        if (len == 0 || static_cast<size_t>(end - p) < len) {
            fail("endpoint name is not valid UTF-8");
        }
        if (len > 1) {
            cp &= 0x3fu >> (len - 1);
            for (size_t i = 1; i < len; ++i) {
                if ((p[i] & 0xc0) != 0x80) {
                    fail("endpoint name is not valid UTF-8");
                }
                cp = (cp << 6) | (p[i] & 0x3fu);
            }
            static constexpr uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
            if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
                fail("endpoint name is not valid UTF-8");
            }
        }
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
            fail(fmt::format("endpoint name contains a control character (U+{:04X})", cp));
        }
        p += len;
    }
}

// One SAN entry: an IP address (iPAddress) or a host name (dNSName).
bytes general_name(const std::string& entry) {
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, entry.c_str(), &v4) == 1) {
        const auto* b = reinterpret_cast<const uint8_t*>(&v4);
        return tlv(tag::ip_address, bytes_view(b, sizeof(v4)));
    }
    if (inet_pton(AF_INET6, entry.c_str(), &v6) == 1) {
        const auto* b = reinterpret_cast<const uint8_t*>(&v6);
        return tlv(tag::ip_address, bytes_view(b, sizeof(v6)));
    }
    bool ok = !entry.empty() && entry.size() <= 253 && entry.front() != '.' && entry.back() != '.';
    for (size_t i = 0; ok && i < entry.size(); ++i) {
        char c = entry[i];
        bool wildcard = c == '*' && i == 0 && entry.size() > 2 && entry[1] == '.';
        ok = wildcard || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
             c == '.' || c == '_';
    }
    if (!ok) {
        fail(fmt::format("\"{}\" is neither an IP address nor a valid DNS name", entry));
    }
    return tlv(tag::dns_name, str_bytes(entry));
}

// ---- certificates ------------------------------------------------------------

struct cert_request {
    const bytes& issuer;
    const bytes& subject;
    const bytes& subject_spki;
    const bytes& authority_key_id;
    bool is_ca = false;
    bool leaf_rsa = false;
    bool client_auth = false;
    bool server_auth = false;
    bytes alt_names; ///< GeneralNames content, empty for none
    int64_t not_before = 0;
    int64_t not_after = 0;
    bytes serial;
};

// The TBSCertificate, encoded here rather than by wc_MakeCert_ex: wolfSSL
// 5.5.4's (non-template) encoder writes basicConstraints CA:TRUE as non-critical
// and offers no way to mark it critical, which RFC 5280 4.2.1.9 requires and
// `openssl verify -x509_strict` enforces. Writing the body ourselves also
// gives exact validity bounds and byte-exact issuer names.
bytes encode_tbs(const cert_request& req, const bytes& sig_alg) {
    bytes exts;
    auto add = [&exts](bytes ext) { exts.insert(exts.end(), ext.begin(), ext.end()); };
    if (req.is_ca) {
        add(extension(oid::basic_constraints, true, tlv(tag::sequence, bytes{tag::boolean, 0x01, 0xff})));
        add(extension(oid::key_usage, true, key_usage_bits(ku_key_cert_sign | ku_crl_sign)));
    } else {
        add(extension(oid::basic_constraints, true, tlv(tag::sequence, bytes{})));
        // RSA keys may also carry TLS 1.2 RSA key transport; ECDSA keys only sign.
        uint8_t ku = ku_digital_signature | (req.leaf_rsa ? ku_key_encipherment : 0);
        add(extension(oid::key_usage, true, key_usage_bits(ku)));
        bytes eku;
        if (req.server_auth) {
            auto o = tlv(tag::oid, oid::server_auth);
            eku.insert(eku.end(), o.begin(), o.end());
        }
        if (req.client_auth) {
            auto o = tlv(tag::oid, oid::client_auth);
            eku.insert(eku.end(), o.begin(), o.end());
        }
        add(extension(oid::ext_key_usage, false, tlv(tag::sequence, eku)));
    }
    add(extension(oid::subject_key_id, false, tlv(tag::octet_string, key_id_of(req.subject_spki))));
    add(extension(oid::authority_key_id, false, tlv(tag::sequence, tlv(tag::key_id, req.authority_key_id))));
    if (!req.alt_names.empty()) {
        add(extension(oid::subject_alt_name, false, tlv(tag::sequence, req.alt_names)));
    }
    static const bytes version_v3{tag::ctx0, 0x03, tag::integer, 0x01, 0x02};
    return tlv(tag::sequence, cat({version_v3, tlv(tag::integer, req.serial), sig_alg, req.issuer,
                                   tlv(tag::sequence, cat({encode_time(req.not_before), encode_time(req.not_after)})),
                                   req.subject, req.subject_spki, tlv(tag::ctx3, tlv(tag::sequence, exts))}));
}

int64_t now_seconds() {
    return static_cast<int64_t>(std::time(nullptr));
}

} // namespace

// ---- authority ---------------------------------------------------------------

authority authority::create(config::key_type type, uint32_t days) {
    check_days(days);
    rng r;
    auto key = private_key::generate(type, r);
    auto name = encode_name(ca_common_name, {});
    auto spki = key.spki();
    auto key_id = key_id_of(spki);
    int64_t now = now_seconds();
    cert_request req{name, name, spki, key_id};
    req.is_ca = true;
    req.not_before = now - backdate_seconds;
    req.not_after = now + int64_t{days} * 86400;
    req.serial = random_serial(r);
    auto der = key.sign_cert(encode_tbs(req, key.sig_alg()), r);

    authority ca;
    ca._cert_pem = private_key::to_pem(der, CERT_TYPE);
    ca._subject_der = std::move(name);
    ca._key_id = std::move(key_id);
    ca._key_der = key.traditional_der();
    ca._rsa = key.is_rsa();
    return ca;
}

authority authority::load(std::string_view cert_pem, std::string_view key_pem) {
    rng r;
    bytes der(cert_pem.size() + 1);
    int n = cert_pem.empty()
                ? -1
                : wc_CertPemToDer(reinterpret_cast<const byte*>(cert_pem.data()), static_cast<int>(cert_pem.size()),
                                  der.data(), static_cast<int>(der.size()), CERT_TYPE);
    if (n <= 0) {
        fail("CA certificate is not a PEM certificate");
    }
    der.resize(static_cast<size_t>(n));

    // wolfSSL's parser validates the whole certificate and reads basicConstraints.
    bool is_ca = false;
    bool is_rsa = false;
    {
        auto dc = std::make_unique<DecodedCert>();
        wc_InitDecodedCert(dc.get(), der.data(), static_cast<word32>(der.size()), nullptr);
        int ret = wc_ParseCert(dc.get(), CERT_TYPE, NO_VERIFY, nullptr);
        is_ca = dc->isCA;
        word32 key_oid = dc->keyOID;
        wc_FreeDecodedCert(dc.get());
        if (ret != 0) {
            fail(fmt::format("CA certificate cannot be parsed: {} ({})", wc_GetErrorString(ret), ret));
        }
        if (key_oid != RSAk && key_oid != ECDSAk) {
            fail("CA certificate has a key that is neither RSA nor ECDSA");
        }
        is_rsa = key_oid == RSAk;
    }
    if (!is_ca) {
        fail("CA certificate is not a CA certificate (no basicConstraints CA:TRUE)");
    }
    auto parts = split_cert(der);

    if (key_pem.find("ENCRYPTED") != std::string_view::npos) {
        fail("CA key is encrypted; an unencrypted PEM key is needed");
    }
    secret_bytes key_der(bytes(key_pem.size() + 1));
    int k = key_pem.empty()
                ? -1
                : wc_KeyPemToDer(reinterpret_cast<const byte*>(key_pem.data()), static_cast<int>(key_pem.size()),
                                 key_der.bytes.data(), static_cast<int>(key_der.bytes.size()), nullptr);
    if (k <= 0) {
        fail("CA key is not a PEM private key");
    }
    key_der.bytes.resize(static_cast<size_t>(k));
    // PKCS#8 wraps the traditional key; find it (a negative result: not PKCS#8).
    word32 offset = 0;
    bytes_view traditional = key_der.bytes;
    if (wc_GetPkcs8TraditionalOffset(key_der.bytes.data(), &offset, static_cast<word32>(key_der.bytes.size())) >= 0) {
        traditional = traditional.subspan(offset);
    }
    auto key = private_key::decode(is_rsa, traditional, r);
    if (!key) {
        fail(fmt::format("CA key is not an {} private key, as the CA certificate's key is", is_rsa ? "RSA" : "EC"));
    }
    if (!key->matches(parts.spki, r)) {
        fail("CA key does not match the CA certificate");
    }

    authority ca;
    ca._cert_pem = private_key::to_pem(der, CERT_TYPE);
    ca._subject_der = std::move(parts.subject);
    ca._key_id = parts.key_id ? std::move(*parts.key_id) : key_id_of(parts.spki);
    ca._key_der = key->traditional_der();
    ca._rsa = is_rsa;
    return ca;
}

std::string authority::key_pem() const {
    rng r;
    auto key = private_key::decode(_rsa, _key_der.bytes, r);
    if (!key) {
        fail("CA key cannot be decoded");
    }
    return key->pkcs8_pem();
}

issued authority::issue(std::string cn, const std::string& org, config::key_type type, uint32_t days, bool client_auth,
                        bool server_auth, const std::vector<std::string>& sans) const {
    check_days(days);
    bytes alt_names;
    std::vector<std::string_view> seen;
    for (const auto& s : sans) {
        if (std::ranges::find(seen, s) != seen.end()) {
            continue;
        }
        seen.push_back(s);
        auto gn = general_name(s);
        alt_names.insert(alt_names.end(), gn.begin(), gn.end());
    }

    rng r;
    auto ca_key = private_key::decode(_rsa, _key_der.bytes, r);
    if (!ca_key) {
        fail("CA key cannot be decoded");
    }
    auto key = private_key::generate(type, r);
    auto subject = encode_name(cn, org);
    auto spki = key.spki();
    int64_t now = now_seconds();
    cert_request req{_subject_der, subject, spki, _key_id};
    req.leaf_rsa = key.is_rsa();
    req.client_auth = client_auth;
    req.server_auth = server_auth;
    req.alt_names = std::move(alt_names);
    req.not_before = now - backdate_seconds;
    req.not_after = now + int64_t{days} * 86400;
    req.serial = random_serial(r);
    auto der = ca_key->sign_cert(encode_tbs(req, ca_key->sig_alg()), r);

    issued out;
    out.cn = std::move(cn);
    out.cert_pem = private_key::to_pem(der, CERT_TYPE);
    out.key_pem = key.pkcs8_pem();
    out.serial_hex = to_hex(req.serial);
    out.not_after = req.not_after;
    return out;
}

issued authority::issue_server(const std::string& server_name, const std::vector<std::string>& sans,
                               config::key_type type, uint32_t days) const {
    if (server_name.empty() || server_name.size() > max_name_bytes) {
        fail(fmt::format("server name must be 1..{} bytes, got {}", max_name_bytes, server_name.size()));
    }
    std::vector<std::string> all{server_name};
    all.insert(all.end(), sans.begin(), sans.end());
    return issue(server_name, {}, type, days, false, true, all);
}

issued authority::issue_endpoint(config::endpoint_kind kind, const std::string& name, config::key_type type,
                                 uint32_t days, const std::function<bool(const std::string&)>& cn_taken) const {
    check_endpoint_name(name);
    std::string cn = random_cn(kind);
    // 48 random bits: a second draw is already rare; 64 in a row means the
    // callback always says "taken".
    for (int tries = 1; cn_taken && cn_taken(cn); ++tries) {
        if (tries == 64) {
            fail("no free endpoint CN after 64 random draws");
        }
        cn = random_cn(kind);
    }
    bool service = kind == config::endpoint_kind::service;
    return issue(std::move(cn), (service ? "Service-" : "Client-") + name, type, days, true, service, {});
}

std::string random_cn(config::endpoint_kind kind) {
    rng r;
    return (kind == config::endpoint_kind::service ? "s" : "c") + to_hex(r.block(6));
}

} // namespace zt::control::ca
