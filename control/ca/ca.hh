// The built-in certificate authority: creates or loads the CA (ca.crt/ca.key)
// and issues the server certificate and client/service endpoint certificates,
// all with wolfCrypt. Control plane only; errors are std::runtime_error.
#pragma once

#include "common/config/model.hh"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zt::control::ca {

/// One issued certificate with its new private key (PEM, PKCS#8, unencrypted).
struct issued {
    std::string cn;
    std::string cert_pem;
    std::string key_pem;
    std::string serial_hex; ///< 16 bytes, 32 lowercase hex digits
    int64_t not_after = 0;  ///< Unix seconds
};

namespace detail {
/// Key bytes that are zeroed before their memory is released.
struct secret_bytes {
    std::vector<uint8_t> bytes;
    secret_bytes() = default;
    explicit secret_bytes(std::vector<uint8_t>&& b) noexcept : bytes(std::move(b)) {}
    secret_bytes(secret_bytes&& o) noexcept = default; // steals the buffer: nothing left behind to wipe
    secret_bytes& operator=(secret_bytes&& o) noexcept;
    secret_bytes(const secret_bytes&) = delete;
    secret_bytes& operator=(const secret_bytes&) = delete;
    ~secret_bytes() { wipe(); }
    void wipe() noexcept;
};
} // namespace detail

/// Default validity of everything issued, as in the seed guide.
inline constexpr uint32_t default_days = 3650;

/// The CA: its certificate and private key. Movable; issuing is const and
/// uses a fresh wolfCrypt RNG per call, so any thread may issue concurrently.
/// Every certificate is valid from now-1h (clock skew) to now+days, has a
/// random positive 16-byte serial, SKID/AKID, and is signed with SHA-256
/// (ECDSA or RSA, following the CA key).
class authority {
public:
    /// A new self-signed CA, subject and issuer CN=ZeroTrust CA, with
    /// basicConstraints CA:TRUE (critical), keyUsage keyCertSign+cRLSign, SKID.
    /// `days` in 1..36500.
    static authority create(config::key_type type, uint32_t days = default_days);

    /// Adopts an existing CA (ours, or one made with openssl). Throws, naming
    /// the problem, if the certificate or key is not PEM, cannot be parsed, is
    /// encrypted, is not a CA, or if the key does not belong to the certificate.
    static authority load(std::string_view cert_pem, std::string_view key_pem);

    const std::string& cert_pem() const { return _cert_pem; }
    /// The CA private key, PEM (PKCS#8). Write it with mode 0600.
    std::string key_pem() const;

    /// The certificate of the DNS server and proxy: CN=`server_name`, SANs =
    /// `server_name` followed by `sans` (duplicates dropped); each entry that
    /// parses as an IPv4/IPv6 address becomes an IP SAN, anything else a DNS
    /// SAN (letters, digits, '-', '.', '_', leading "*." allowed).
    /// extKeyUsage serverAuth.
    issued issue_server(const std::string& server_name, const std::vector<std::string>& sans, config::key_type type,
                        uint32_t days = default_days) const;

    /// A client or service identity: CN=random_cn(kind), drawn again while
    /// `cn_taken(cn)` is true (an empty function: nothing is taken), and
    /// O=Client-<name> or Service-<name>. `name`: 1-64 bytes of UTF-8, no
    /// control characters. extKeyUsage clientAuth (client) or
    /// clientAuth+serverAuth (service).
    issued issue_endpoint(config::endpoint_kind kind, const std::string& name, config::key_type type, uint32_t days,
                          const std::function<bool(const std::string&)>& cn_taken) const;

private:
    authority() = default;
    issued issue(std::string cn, const std::string& org, config::key_type type, uint32_t days, bool client_auth,
                 bool server_auth, const std::vector<std::string>& sans) const;

    std::string _cert_pem;
    std::vector<uint8_t> _subject_der; ///< the CA's subject Name, copied as issuer
    std::vector<uint8_t> _key_id;      ///< the CA's SKID, written as AKID
    detail::secret_bytes _key_der;     ///< traditional DER (RFC 5915 EC or PKCS#1 RSA)
    bool _rsa = false;
};

/// A fresh endpoint CN: "c" (client) or "s" (service) + 12 lowercase hex
/// digits from the wolfCrypt RNG. Any thread.
std::string random_cn(config::endpoint_kind kind);

} // namespace zt::control::ca
