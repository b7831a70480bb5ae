// JSON writers for the config files (see write.hh).
#include "common/config/write.hh"

#include "common/config/parse.hh"

#include <fmt/format.h>

namespace zt::config {
namespace {

std::string string_list(const std::vector<std::string>& list) {
    std::string out = "[";
    for (size_t i = 0; i < list.size(); ++i) {
        out += (i ? ", " : "") + json_string(list[i]);
    }
    return out + "]";
}

} // namespace

std::string json_string(std::string_view s) {
    std::string out = "\"";
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (c < 0x20) {
                out += fmt::format("\\u{:04x}", c);
            } else {
                out += ch;
            }
        }
    }
    return out + "\"";
}

std::string zones_json(const std::vector<zone>& zones) {
    std::string out = "{";
    for (size_t i = 0; i < zones.size(); ++i) {
        const auto& z = zones[i];
        out += fmt::format("{}\n  {}: {{\n    \"records\": {{", i ? "," : "", json_string(z.name));
        for (size_t j = 0; j < z.records.size(); ++j) {
            const auto& rs = z.records[j];
            out += fmt::format("{}\n      {}: ", j ? "," : "", json_string(rs.label));
            if (rs.records.size() == 1) {
                out += json_string(rs.records[0].text);
            } else {
                std::vector<std::string> texts;
                for (const auto& r : rs.records) {
                    texts.push_back(r.text);
                }
                out += string_list(texts);
            }
        }
        out += z.records.empty() ? "},\n" : "\n    },\n";
        if (!z.service_cn.empty()) {
            out += fmt::format("    \"service_cn\": {},\n", json_string(z.service_cn));
        }
        out += fmt::format("    \"allowed_endpoints\": {}\n  }}", string_list(z.allowed_endpoints));
    }
    return out + (zones.empty() ? "}\n" : "\n}\n");
}

std::string routes_json(const std::vector<route>& routes) {
    std::string out = "{";
    for (size_t i = 0; i < routes.size(); ++i) {
        const auto& r = routes[i];
        out += fmt::format("{}\n  {}: {{\n", i ? "," : "", json_string(r.service_cn));
        if (r.seed_host_port && r.backends.size() == 1 && r.backends[0].weight == 1) {
            out += fmt::format("    \"host\": {},\n    \"port\": {},\n", json_string(r.backends[0].host),
                               r.backends[0].port);
        } else {
            out += "    \"backends\": [";
            for (size_t j = 0; j < r.backends.size(); ++j) {
                const auto& b = r.backends[j];
                out += fmt::format("{}\n      {{\"host\": {}, \"port\": {}, \"weight\": {}}}", j ? "," : "",
                                   json_string(b.host), b.port, b.weight);
            }
            out += "\n    ],\n";
        }
        out += fmt::format("    \"domains\": {},\n", string_list(r.domains));
        if (r.connect_timeout_ms != route{}.connect_timeout_ms) {
            out += fmt::format("    \"connect_timeout_ms\": {},\n", r.connect_timeout_ms);
        }
        if (r.health_check) {
            out += "    \"health_check\": true,\n";
        }
        if (r.via_service_endpoint) {
            out += "    \"service_endpoint\": true,\n";
        }
        out += fmt::format("    \"name\": {}\n  }}", json_string(r.name));
    }
    return out + (routes.empty() ? "}\n" : "\n}\n");
}

std::string endpoints_json(const std::vector<endpoint>& endpoints) {
    std::string out = "{";
    for (size_t i = 0; i < endpoints.size(); ++i) {
        const auto& e = endpoints[i];
        out += fmt::format("{}\n  {}: {{\n    \"name\": {},\n    \"kind\": \"{}\",\n    \"serial\": {},\n"
                           "    \"not_after\": \"{}\",\n    \"revoked\": {}\n  }}",
                           i ? "," : "", json_string(e.cn), json_string(e.name),
                           e.kind == endpoint_kind::client ? "client" : "service", json_string(e.serial),
                           format_time(e.not_after), e.revoked ? "true" : "false");
    }
    return out + (endpoints.empty() ? "}\n" : "\n}\n");
}

std::string appliance_json(const appliance& a) {
    const auto& l = a.limits;
    return fmt::format(
        "{{\n"
        "  \"server_name\": {},\n"
        "  \"dot_listen\": {},\n"
        "  \"proxy_listen\": {},\n"
        "  \"admin_listen\": {},\n"
        "  \"proxy_addresses\": {},\n"
        "  \"upstreams\": {},\n"
        "  \"shards\": {},\n"
        "  \"tls_min_version\": {},\n"
        "  \"key_type\": \"{}\",\n"
        "  \"cert_days\": {},\n"
        "  \"limits\": {{\n"
        "    \"max_connections_per_shard\": {},\n"
        "    \"max_connections_per_cn\": {},\n"
        "    \"handshake_timeout_ms\": {},\n"
        "    \"idle_timeout_ms\": {},\n"
        "    \"tunnel_idle_timeout_ms\": {},\n"
        "    \"upstream_timeout_ms\": {},\n"
        "    \"max_queries_per_connection\": {},\n"
        "    \"dns_cache_entries\": {}\n"
        "  }}\n"
        "}}\n",
        json_string(a.server_name), string_list(a.dot_listen), string_list(a.proxy_listen),
        json_string(a.admin_listen), string_list(a.proxy_addresses), string_list(a.upstreams), a.shards,
        json_string(a.tls_min_version), a.keys == key_type::rsa4096 ? "rsa4096" : "ecdsa-p256", a.cert_days,
        l.max_connections_per_shard, l.max_connections_per_cn, l.handshake_timeout_ms, l.idle_timeout_ms,
        l.tunnel_idle_timeout_ms, l.upstream_timeout_ms, l.max_queries_per_connection, l.dns_cache_entries);
}

} // namespace zt::config
