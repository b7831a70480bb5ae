// The endpoint's bundle: the directory `ztdns client add` (or `service add`) writes, with endpoint.json, the
// certificate, its key (mode 0600) and the CA. Loaded once at start; anything missing, unreadable, mismatched,
// expired, or a key that others can read, refuses the start with one clear line.
#pragma once

#include "common/net/socket.hh"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace zt::endpoint {

struct bundle {
    std::string dir;
    std::string cn;
    std::string name;
    bool service = false; ///< kind "service"
    std::string server_name;
    std::vector<net::address> dot_servers;
    std::vector<net::address> proxies;
    std::string cert_pem, key_pem, ca_pem;
    int64_t not_before = 0; ///< Unix seconds
    int64_t not_after = 0;
};

struct bundle_result {
    std::optional<bundle> value;
    std::string error;                 ///< when !value: what is wrong, naming the file
    std::vector<std::string> warnings; ///< e.g. the certificate expires soon
};

/// Loads and checks the bundle in `dir` at time `now` (Unix seconds): endpoint.json parses and names a cn, a kind,
/// the server name and at least one DoT server; the key is not readable by group or others; the certificate's CN
/// is the bundle's cn, it is valid at `now`, it chains to ca.crt, and the key belongs to it. Main thread, at start.
bundle_result load_bundle(const std::string& dir, int64_t now);

/// Unix seconds of an ASN.1 UTCTime (type 0x17, "YYMMDDHHMMSSZ") or GeneralizedTime (0x18, "YYYYMMDDHHMMSSZ");
/// nullopt when malformed.
std::optional<int64_t> parse_asn1_time(uint8_t type, std::string_view text);

} // namespace zt::endpoint
