// The configuration model: zones.json, routes.json (the seed guide's formats,
// with additive extensions), endpoints.json (issued identities) and ztdns.json
// (the appliance). Plain values, parsed and validated by config/parse.hh,
// written back by config/write.hh. Control-plane only: never on a shard.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace zt::config {

/// One DNS record of a zone, as written in zones.json: "A 203.0.113.50" or
/// "AAAA 2001:db8::50". `addr` holds the 4 or 16 address bytes.
struct record {
    enum class type : uint16_t { a = 1, aaaa = 28 };
    type rtype = type::a;
    std::array<uint8_t, 16> addr{};
    std::string text; ///< as in the file, for writing back
};

/// The records of one owner name: `label` is "@" for the zone apex, or a
/// relative name ("replica", "a.b"). zones.json holds one string per label;
/// a list of strings is accepted too (several proxy addresses).
struct record_set {
    std::string label;
    std::vector<record> records;
};

struct zone {
    std::string name; ///< lower case, no trailing dot: "db.internal.corp"
    std::vector<record_set> records;
    std::string service_cn;
    std::vector<std::string> allowed_endpoints; ///< CNs, in file order
};

struct backend {
    std::string host; ///< IP address or host name, as in the file
    uint16_t port = 0;
    uint32_t weight = 1;
};

/// One routes.json entry. The seed's single `host`/`port` is backends[0];
/// `backends: [{host, port, weight}]` is the additive extension.
struct route {
    std::string service_cn;
    std::string name;
    std::vector<backend> backends;
    std::vector<std::string> domains;
    bool seed_host_port = true; ///< written back as host/port (else as backends)
    uint32_t connect_timeout_ms = 3000;
    bool health_check = false; ///< active TCP health checks
    bool via_service_endpoint = false; ///< reached through a dialled-out service endpoint
};

enum class endpoint_kind : uint8_t { client, service };

/// One issued identity (endpoints.json).
struct endpoint {
    std::string cn; ///< "c" + 12 hex (client) or "s" + 12 hex (service)
    std::string name;
    endpoint_kind kind = endpoint_kind::client;
    std::string serial;    ///< certificate serial, hex
    int64_t not_after = 0; ///< certificate expiry, Unix seconds
    bool revoked = false;
};

enum class key_type : uint8_t { ecdsa_p256, rsa4096 };

/// ztdns.json: the appliance itself.
struct appliance {
    std::string server_name = "ztdns.local"; ///< CN and first SAN of the server certificate
    std::vector<std::string> dot_listen{"0.0.0.0:853"};
    std::vector<std::string> proxy_listen{"0.0.0.0:8443"};
    std::string admin_listen = "127.0.0.1:5001";
    std::vector<std::string> proxy_addresses; ///< what DNS hands out; also server cert SANs
    std::vector<std::string> upstreams{"1.1.1.1:53"};
    uint32_t shards = 0; ///< 0: one per online core
    std::string tls_min_version = "1.3"; ///< "1.3" or "1.2"
    key_type keys = key_type::ecdsa_p256;
    uint32_t cert_days = 3650;
    struct limits_t {
        uint32_t max_connections_per_shard = 16384;
        uint32_t max_connections_per_cn = 1024;
        uint32_t handshake_timeout_ms = 5000;
        uint32_t idle_timeout_ms = 30000;         ///< DoT connections
        uint32_t tunnel_idle_timeout_ms = 3600000; ///< proxy tunnels: quiet psql or ssh sessions live on
        uint32_t upstream_timeout_ms = 2000;
        uint32_t max_queries_per_connection = 65535;
        uint32_t dns_cache_entries = 16384;
    } limits;
};

struct config {
    appliance app;
    std::vector<zone> zones;
    std::vector<route> routes;
    std::vector<endpoint> endpoints;
};

/// One problem found in a config file: `file: path: message`, e.g.
/// "routes.json: .s1234abcd5678.port: 70000 is not a port (1-65535)".
struct error {
    std::string file;
    std::string path;
    std::string message;
    std::string str() const { return file + ": " + (path.empty() ? "" : path + ": ") + message; }
};

} // namespace zt::config
