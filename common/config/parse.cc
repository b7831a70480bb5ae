// Config parsing with simdjson's DOM API; every error names file, JSON path and
// what is wrong. Unknown keys are errors: a typo must not silently do nothing.
#include "common/config/parse.hh"

#include "common/util/fs.hh"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <initializer_list>
#include <map>
#include <set>

#include <fmt/format.h>
#include <simdjson.h>

namespace zt::config {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

/// Collects errors for one file.
struct context {
    std::string_view file;
    std::vector<error>& errors;
    void fail(const std::string& path, std::string msg) { errors.push_back({std::string(file), path, std::move(msg)}); }
};

/// For values whose type was checked just before: the get() cannot fail.
void checked(simdjson::error_code) noexcept {}

std::string_view type_name(element_type t) {
    switch (t) {
    case element_type::ARRAY:
        return "an array";
    case element_type::OBJECT:
        return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE:
        return "a number";
    case element_type::STRING:
        return "a string";
    case element_type::BOOL:
        return "a boolean";
    case element_type::NULL_VALUE:
        return "null";
    }
    return "a value";
}

std::string quote(std::string_view s) {
    std::string out = "\"";
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out += ch;
        }
    }
    return out + "\"";
}

bool expect_type(context& ctx, const std::string& path, element e, element_type want, std::string_view want_name) {
    if (e.type() == want) {
        return true;
    }
    ctx.fail(path, fmt::format("must be {}, not {}", want_name, type_name(e.type())));
    return false;
}

std::optional<std::string_view> get_string(context& ctx, const std::string& path, element e) {
    if (!expect_type(ctx, path, e, element_type::STRING, "a string")) {
        return std::nullopt;
    }
    std::string_view s;
    checked(e.get_string().get(s));
    return s;
}

/// Integers within [lo, hi]; rejects fractions, strings and out-of-range values.
std::optional<int64_t> get_int(context& ctx, const std::string& path, element e, int64_t lo, int64_t hi,
                               std::string_view what) {
    int64_t v = 0;
    if (e.type() == element_type::INT64) {
        checked(e.get_int64().get(v));
    } else if (e.type() == element_type::UINT64) {
        uint64_t u = 0;
        checked(e.get_uint64().get(u));
        ctx.fail(path, fmt::format("{} is not {} ({}-{})", u, what, lo, hi));
        return std::nullopt;
    } else if (e.type() == element_type::DOUBLE) {
        double d = 0;
        checked(e.get_double().get(d));
        ctx.fail(path, fmt::format("{} is not {} ({}-{})", d, what, lo, hi));
        return std::nullopt;
    } else {
        ctx.fail(path, fmt::format("must be a number, not {}", type_name(e.type())));
        return std::nullopt;
    }
    if (v < lo || v > hi) {
        ctx.fail(path, fmt::format("{} is not {} ({}-{})", v, what, lo, hi));
        return std::nullopt;
    }
    return v;
}

std::optional<bool> get_bool(context& ctx, const std::string& path, element e) {
    if (!expect_type(ctx, path, e, element_type::BOOL, "true or false")) {
        return std::nullopt;
    }
    bool b = false;
    checked(e.get_bool().get(b));
    return b;
}

/// Iterates an object's members, reporting duplicate keys and unknown keys
/// (when `known` is non-empty).
template <typename F>
void for_members(context& ctx, const std::string& path, element e, std::initializer_list<std::string_view> known,
                 F&& f) {
    simdjson::dom::object obj;
    if (e.get_object().get(obj)) {
        return;
    }
    std::set<std::string_view> seen;
    for (auto field : obj) {
        std::string_view k = field.key;
        std::string p = path + key_path(k);
        if (!seen.insert(k).second) {
            ctx.fail(p, "duplicate key");
            continue;
        }
        if (known.size() > 0 && std::find(known.begin(), known.end(), k) == known.end()) {
            std::string list;
            for (auto n : known) {
                list += (list.empty() ? "" : ", ") + std::string(n);
            }
            ctx.fail(p, fmt::format("unknown key (expected one of: {})", list));
            continue;
        }
        f(k, field.value, p);
    }
}

std::vector<std::string> get_string_list(context& ctx, const std::string& path, element e) {
    std::vector<std::string> out;
    if (!expect_type(ctx, path, e, element_type::ARRAY, "an array of strings")) {
        return out;
    }
    simdjson::dom::array arr;
    checked(e.get_array().get(arr));
    size_t i = 0;
    for (element item : arr) {
        if (auto s = get_string(ctx, fmt::format("{}[{}]", path, i), item)) {
            out.emplace_back(*s);
        }
        ++i;
    }
    return out;
}

/// Parses the document and checks that the top level is an object.
bool parse_root(context& ctx, simdjson::dom::parser& parser, const simdjson::padded_string& text, element& root) {
    auto err = parser.parse(text).get(root);
    if (err) {
        ctx.fail("", fmt::format("not valid JSON: {}", simdjson::error_message(err)));
        return false;
    }
    return expect_type(ctx, "", root, element_type::OBJECT, "an object at the top level");
}

std::optional<std::string> check_name(context& ctx, const std::string& path, std::string_view name) {
    std::string why;
    auto n = normalize_dns_name(name, why);
    if (!n) {
        ctx.fail(path, fmt::format("{} is not a valid DNS name: {}", quote(name), why));
    }
    return n;
}

void check_cn(context& ctx, const std::string& path, std::string_view cn) {
    if (!valid_cn(cn)) {
        ctx.fail(path, fmt::format("{} is not a valid CN (1-64 of A-Z a-z 0-9 . _ -)", quote(cn)));
    }
}

} // namespace

std::string key_path(std::string_view key) {
    bool ident = !key.empty() && !std::isdigit(static_cast<unsigned char>(key[0]));
    for (char c : key) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
            ident = false;
        }
    }
    if (ident) {
        return "." + std::string(key);
    }
    return "[" + quote(key) + "]";
}

std::optional<std::string> normalize_dns_name(std::string_view name, std::string& why) {
    if (!name.empty() && name.back() == '.') {
        name.remove_suffix(1);
    }
    if (name.empty()) {
        why = "empty name";
        return std::nullopt;
    }
    if (name.size() > 253) {
        why = fmt::format("{} characters (at most 253)", name.size());
        return std::nullopt;
    }
    std::string out;
    out.reserve(name.size());
    size_t label_len = 0;
    for (size_t i = 0; i <= name.size(); ++i) {
        if (i == name.size() || name[i] == '.') {
            if (label_len == 0) {
                why = "empty label";
                return std::nullopt;
            }
            if (label_len > 63) {
                why = fmt::format("label of {} characters (at most 63)", label_len);
                return std::nullopt;
            }
            label_len = 0;
            if (i < name.size()) {
                out += '.';
            }
            continue;
        }
        auto c = static_cast<unsigned char>(name[i]);
        if (!std::isalnum(c) && c != '-' && c != '_') {
            why = fmt::format("character {} not allowed", quote(std::string_view(&name[i], 1)));
            return std::nullopt;
        }
        out += static_cast<char>(std::tolower(c));
        ++label_len;
    }
    return out;
}

std::optional<record> parse_record(std::string_view text, std::string& why) {
    auto sp = text.find(' ');
    if (sp == std::string_view::npos) {
        why = "expected \"A <IPv4>\" or \"AAAA <IPv6>\"";
        return std::nullopt;
    }
    std::string type(text.substr(0, sp));
    std::string value(text.substr(sp + 1));
    while (!value.empty() && value.front() == ' ') {
        value.erase(0, 1);
    }
    for (auto& c : type) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    record r;
    r.text = std::string(text);
    if (type == "A") {
        r.rtype = record::type::a;
        if (inet_pton(AF_INET, value.c_str(), r.addr.data()) != 1) {
            why = fmt::format("{} is not an IPv4 address", quote(value));
            return std::nullopt;
        }
    } else if (type == "AAAA") {
        r.rtype = record::type::aaaa;
        if (inet_pton(AF_INET6, value.c_str(), r.addr.data()) != 1) {
            why = fmt::format("{} is not an IPv6 address", quote(value));
            return std::nullopt;
        }
    } else {
        why = fmt::format("record type {} is not supported (A, AAAA)", quote(type));
        return std::nullopt;
    }
    return r;
}

bool valid_listen_address(std::string_view s, std::string& why) {
    std::string host;
    std::string_view port;
    if (!s.empty() && s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
            why = fmt::format("{} is not [IPv6]:port", quote(s));
            return false;
        }
        host = std::string(s.substr(1, close - 1));
        port = s.substr(close + 2);
        in6_addr a6{};
        if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
            why = fmt::format("{} is not an IPv6 address", quote(host));
            return false;
        }
    } else {
        auto colon = s.rfind(':');
        if (colon == std::string_view::npos) {
            why = fmt::format("{} is not address:port", quote(s));
            return false;
        }
        host = std::string(s.substr(0, colon));
        port = s.substr(colon + 1);
        in_addr a4{};
        if (inet_pton(AF_INET, host.c_str(), &a4) != 1) {
            why = fmt::format("{} is not an IPv4 address (write IPv6 as [addr]:port)", quote(host));
            return false;
        }
    }
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit)) {
        why = fmt::format("{} is not a port", quote(port));
        return false;
    }
    int p = std::stoi(std::string(port));
    if (p > 65535) {
        why = fmt::format("{} is not a port (0-65535)", p);
        return false;
    }
    return true;
}

bool valid_cn(std::string_view cn) noexcept {
    if (cn.empty() || cn.size() > 64) {
        return false;
    }
    return std::all_of(cn.begin(), cn.end(), [](char ch) {
        auto c = static_cast<unsigned char>(ch);
        return std::isalnum(c) || c == '.' || c == '_' || c == '-';
    });
}

std::optional<int64_t> parse_time(std::string_view s) {
    // Exactly YYYY-MM-DDTHH:MM:SSZ.
    if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z') {
        return std::nullopt;
    }
    auto num = [&](size_t at, size_t n) -> int {
        int v = 0;
        for (size_t i = at; i < at + n; ++i) {
            if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
                return -1;
            }
            v = v * 10 + (s[i] - '0');
        }
        return v;
    };
    tm t{};
    t.tm_year = num(0, 4) - 1900;
    t.tm_mon = num(5, 2) - 1;
    t.tm_mday = num(8, 2);
    t.tm_hour = num(11, 2);
    t.tm_min = num(14, 2);
    t.tm_sec = num(17, 2);
    if (t.tm_year < 70 || t.tm_mon < 0 || t.tm_mon > 11 || t.tm_mday < 1 || t.tm_mday > 31 || t.tm_hour < 0 ||
        t.tm_hour > 23 || t.tm_min < 0 || t.tm_min > 59 || t.tm_sec < 0 || t.tm_sec > 60) {
        return std::nullopt;
    }
    return static_cast<int64_t>(timegm(&t));
}

std::string format_time(int64_t unix_seconds) {
    time_t tt = static_cast<time_t>(unix_seconds);
    tm t{};
    gmtime_r(&tt, &t);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &t);
    return buf;
}

parsed<std::vector<zone>> parse_zones(std::string_view json) {
    parsed<std::vector<zone>> out;
    context ctx{zones_file, out.errors};
    simdjson::dom::parser parser;
    simdjson::padded_string text(json);
    element root;
    if (!parse_root(ctx, parser, text, root)) {
        return out;
    }
    std::set<std::string> names;
    for_members(ctx, "", root, {}, [&](std::string_view key, element value, const std::string& path) {
        auto name = check_name(ctx, path, key);
        if (!expect_type(ctx, path, value, element_type::OBJECT, "an object") || !name) {
            return;
        }
        if (!names.insert(*name).second) {
            ctx.fail(path, fmt::format("zone {} appears twice (names are case-insensitive)", *name));
            return;
        }
        zone z;
        z.name = *name;
        bool have_records = false, have_acl = false;
        for_members(ctx, path, value, {"records", "service_cn", "allowed_endpoints"},
                    [&](std::string_view k, element v, const std::string& p) {
                        if (k == "records") {
                            have_records = true;
                            if (!expect_type(ctx, p, v, element_type::OBJECT, "an object of label: record")) {
                                return;
                            }
                            std::set<std::string> labels;
                            for_members(ctx, p, v, {}, [&](std::string_view label, element rv, const std::string& rp) {
                                record_set rs;
                                if (label == "@") {
                                    rs.label = "@";
                                } else if (auto l = check_name(ctx, rp, label)) {
                                    rs.label = *l;
                                    if (rs.label.size() + 1 + z.name.size() > 253) {
                                        ctx.fail(rp, fmt::format("{}.{} is longer than 253 characters", rs.label, z.name));
                                        return;
                                    }
                                } else {
                                    return;
                                }
                                if (!labels.insert(rs.label).second) {
                                    ctx.fail(rp, fmt::format("label {} appears twice", rs.label));
                                    return;
                                }
                                std::vector<std::pair<std::string, element>> texts;
                                if (rv.type() == element_type::ARRAY) {
                                    simdjson::dom::array arr;
                                    checked(rv.get_array().get(arr));
                                    size_t i = 0;
                                    for (element item : arr) {
                                        texts.emplace_back(fmt::format("{}[{}]", rp, i++), item);
                                    }
                                    if (texts.empty()) {
                                        ctx.fail(rp, "empty list of records");
                                    }
                                } else {
                                    texts.emplace_back(rp, rv);
                                }
                                for (auto& [tp, te] : texts) {
                                    if (auto s = get_string(ctx, tp, te)) {
                                        std::string why;
                                        if (auto r = parse_record(*s, why)) {
                                            rs.records.push_back(*r);
                                        } else {
                                            ctx.fail(tp, why);
                                        }
                                    }
                                }
                                z.records.push_back(std::move(rs));
                            });
                        } else if (k == "service_cn") {
                            if (auto s = get_string(ctx, p, v)) {
                                check_cn(ctx, p, *s);
                                z.service_cn = std::string(*s);
                            }
                        } else {
                            have_acl = true;
                            z.allowed_endpoints = get_string_list(ctx, p, v);
                            std::set<std::string> seen;
                            for (size_t i = 0; i < z.allowed_endpoints.size(); ++i) {
                                auto ep = fmt::format("{}[{}]", p, i);
                                check_cn(ctx, ep, z.allowed_endpoints[i]);
                                if (!seen.insert(z.allowed_endpoints[i]).second) {
                                    ctx.fail(ep, fmt::format("{} is listed twice", quote(z.allowed_endpoints[i])));
                                }
                            }
                        }
                    });
        if (!have_records) {
            ctx.fail(path, "missing key \"records\"");
        }
        if (!have_acl) {
            ctx.fail(path, "missing key \"allowed_endpoints\"");
        }
        out.value.push_back(std::move(z));
    });
    if (!out.ok()) {
        out.value.clear();
    }
    return out;
}

namespace {

std::optional<backend> parse_backend(context& ctx, const std::string& path, element e) {
    if (!expect_type(ctx, path, e, element_type::OBJECT, "an object {host, port, weight}")) {
        return std::nullopt;
    }
    backend b;
    bool host = false, port = false, ok = true;
    for_members(ctx, path, e, {"host", "port", "weight"}, [&](std::string_view k, element v, const std::string& p) {
        if (k == "host") {
            host = true;
            if (auto s = get_string(ctx, p, v)) {
                std::string why;
                if (s->empty() || s->size() > 253) {
                    ctx.fail(p, "host must be 1-253 characters");
                    ok = false;
                } else {
                    b.host = std::string(*s);
                }
            } else {
                ok = false;
            }
        } else if (k == "port") {
            port = true;
            if (auto n = get_int(ctx, p, v, 1, 65535, "a port")) {
                b.port = static_cast<uint16_t>(*n);
            } else {
                ok = false;
            }
        } else if (auto n = get_int(ctx, p, v, 1, 1000000, "a weight")) {
            b.weight = static_cast<uint32_t>(*n);
        } else {
            ok = false;
        }
    });
    if (!host) {
        ctx.fail(path, "missing key \"host\"");
    }
    if (!port) {
        ctx.fail(path, "missing key \"port\"");
    }
    if (!host || !port || !ok) {
        return std::nullopt;
    }
    return b;
}

} // namespace

parsed<std::vector<route>> parse_routes(std::string_view json) {
    parsed<std::vector<route>> out;
    context ctx{routes_file, out.errors};
    simdjson::dom::parser parser;
    simdjson::padded_string text(json);
    element root;
    if (!parse_root(ctx, parser, text, root)) {
        return out;
    }
    for_members(ctx, "", root, {}, [&](std::string_view key, element value, const std::string& path) {
        check_cn(ctx, path, key);
        if (!expect_type(ctx, path, value, element_type::OBJECT, "an object")) {
            return;
        }
        route r;
        r.service_cn = std::string(key);
        std::optional<std::string> host;
        std::optional<uint16_t> port;
        bool have_host = false, have_port = false, have_backends = false, have_domains = false;
        for_members(ctx, path, value,
                    {"host", "port", "domains", "name", "backends", "connect_timeout_ms", "health_check",
                     "service_endpoint"},
                    [&](std::string_view k, element v, const std::string& p) {
                        if (k == "host") {
                            have_host = true;
                            if (auto s = get_string(ctx, p, v)) {
                                if (s->empty() || s->size() > 253) {
                                    ctx.fail(p, "host must be 1-253 characters");
                                } else {
                                    host = std::string(*s);
                                }
                            }
                        } else if (k == "port") {
                            have_port = true;
                            if (auto n = get_int(ctx, p, v, 1, 65535, "a port")) {
                                port = static_cast<uint16_t>(*n);
                            }
                        } else if (k == "domains") {
                            have_domains = true;
                            auto list = get_string_list(ctx, p, v);
                            for (size_t i = 0; i < list.size(); ++i) {
                                if (auto n = check_name(ctx, fmt::format("{}[{}]", p, i), list[i])) {
                                    r.domains.push_back(*n);
                                }
                            }
                        } else if (k == "name") {
                            if (auto s = get_string(ctx, p, v)) {
                                r.name = std::string(*s);
                            }
                        } else if (k == "backends") {
                            have_backends = true;
                            if (!expect_type(ctx, p, v, element_type::ARRAY, "an array of {host, port, weight}")) {
                                return;
                            }
                            simdjson::dom::array arr;
                            checked(v.get_array().get(arr));
                            size_t i = 0;
                            for (element item : arr) {
                                if (auto b = parse_backend(ctx, fmt::format("{}[{}]", p, i), item)) {
                                    r.backends.push_back(*b);
                                }
                                ++i;
                            }
                            if (i == 0) {
                                ctx.fail(p, "needs at least one backend");
                            }
                        } else if (k == "connect_timeout_ms") {
                            if (auto n = get_int(ctx, p, v, 1, 600000, "a timeout in ms")) {
                                r.connect_timeout_ms = static_cast<uint32_t>(*n);
                            }
                        } else if (k == "health_check") {
                            if (auto b = get_bool(ctx, p, v)) {
                                r.health_check = *b;
                            }
                        } else if (auto b = get_bool(ctx, p, v)) {
                            r.via_service_endpoint = *b;
                        }
                    });
        if (have_backends && (have_host || have_port)) {
            ctx.fail(path, "has both host/port and backends: use one");
        } else if (!have_backends) {
            if (!have_host) {
                ctx.fail(path, "missing key \"host\" (or \"backends\")");
            }
            if (!have_port) {
                ctx.fail(path, "missing key \"port\"");
            }
            if (host && port) {
                r.backends.push_back({*host, *port, 1});
            }
        } else {
            r.seed_host_port = false;
        }
        if (!have_domains) {
            ctx.fail(path, "missing key \"domains\"");
        }
        out.value.push_back(std::move(r));
    });
    if (!out.ok()) {
        out.value.clear();
    }
    return out;
}

parsed<std::vector<endpoint>> parse_endpoints(std::string_view json) {
    parsed<std::vector<endpoint>> out;
    context ctx{endpoints_file, out.errors};
    simdjson::dom::parser parser;
    simdjson::padded_string text(json);
    element root;
    if (!parse_root(ctx, parser, text, root)) {
        return out;
    }
    for_members(ctx, "", root, {}, [&](std::string_view key, element value, const std::string& path) {
        check_cn(ctx, path, key);
        if (!expect_type(ctx, path, value, element_type::OBJECT, "an object")) {
            return;
        }
        endpoint ep;
        ep.cn = std::string(key);
        bool have_kind = false;
        for_members(ctx, path, value, {"name", "kind", "serial", "not_after", "revoked"},
                    [&](std::string_view k, element v, const std::string& p) {
                        if (k == "name") {
                            if (auto s = get_string(ctx, p, v)) {
                                ep.name = std::string(*s);
                            }
                        } else if (k == "kind") {
                            have_kind = true;
                            if (auto s = get_string(ctx, p, v)) {
                                if (*s == "client") {
                                    ep.kind = endpoint_kind::client;
                                } else if (*s == "service") {
                                    ep.kind = endpoint_kind::service;
                                } else {
                                    ctx.fail(p, fmt::format("{} is not a kind (client, service)", quote(*s)));
                                }
                            }
                        } else if (k == "serial") {
                            if (auto s = get_string(ctx, p, v)) {
                                ep.serial = std::string(*s);
                            }
                        } else if (k == "not_after") {
                            if (auto s = get_string(ctx, p, v)) {
                                if (auto t = parse_time(*s)) {
                                    ep.not_after = *t;
                                } else {
                                    ctx.fail(p, fmt::format("{} is not a time like 2036-11-23T00:16:00Z", quote(*s)));
                                }
                            }
                        } else if (auto b = get_bool(ctx, p, v)) {
                            ep.revoked = *b;
                        }
                    });
        if (!have_kind) {
            ctx.fail(path, "missing key \"kind\"");
        }
        out.value.push_back(std::move(ep));
    });
    if (!out.ok()) {
        out.value.clear();
    }
    return out;
}

parsed<appliance> parse_appliance(std::string_view json) {
    parsed<appliance> out;
    context ctx{appliance_file, out.errors};
    simdjson::dom::parser parser;
    simdjson::padded_string text(json);
    element root;
    if (!parse_root(ctx, parser, text, root)) {
        return out;
    }
    appliance& a = out.value;
    auto listen_list = [&](const std::string& p, element v) {
        auto list = get_string_list(ctx, p, v);
        for (size_t i = 0; i < list.size(); ++i) {
            std::string why;
            if (!valid_listen_address(list[i], why)) {
                ctx.fail(fmt::format("{}[{}]", p, i), why);
            }
        }
        if (list.empty() && v.type() == element_type::ARRAY) {
            ctx.fail(p, "needs at least one address");
        }
        return list;
    };
    auto u32 = [&](const std::string& p, element v, int64_t lo, int64_t hi, std::string_view what, uint32_t& dst) {
        if (auto n = get_int(ctx, p, v, lo, hi, what)) {
            dst = static_cast<uint32_t>(*n);
        }
    };
    for_members(
        ctx, "", root,
        {"server_name", "dot_listen", "proxy_listen", "admin_listen", "proxy_addresses", "upstreams", "shards",
         "tls_min_version", "key_type", "cert_days", "limits"},
        [&](std::string_view k, element v, const std::string& p) {
            if (k == "server_name") {
                if (auto s = get_string(ctx, p, v)) {
                    if (auto n = check_name(ctx, p, *s)) {
                        a.server_name = *n;
                    }
                }
            } else if (k == "dot_listen") {
                a.dot_listen = listen_list(p, v);
            } else if (k == "proxy_listen") {
                a.proxy_listen = listen_list(p, v);
            } else if (k == "admin_listen") {
                if (auto s = get_string(ctx, p, v)) {
                    std::string why;
                    if (!s->empty() && !valid_listen_address(*s, why)) {
                        ctx.fail(p, why);
                    }
                    a.admin_listen = std::string(*s);
                }
            } else if (k == "proxy_addresses") {
                a.proxy_addresses = get_string_list(ctx, p, v);
                for (size_t i = 0; i < a.proxy_addresses.size(); ++i) {
                    in6_addr buf{};
                    const auto& s = a.proxy_addresses[i];
                    if (inet_pton(AF_INET, s.c_str(), &buf) != 1 && inet_pton(AF_INET6, s.c_str(), &buf) != 1) {
                        ctx.fail(fmt::format("{}[{}]", p, i), fmt::format("{} is not an IP address", quote(s)));
                    }
                }
            } else if (k == "upstreams") {
                a.upstreams = get_string_list(ctx, p, v);
                for (size_t i = 0; i < a.upstreams.size(); ++i) {
                    std::string why;
                    if (!valid_listen_address(a.upstreams[i], why)) {
                        ctx.fail(fmt::format("{}[{}]", p, i), why);
                    }
                }
            } else if (k == "shards") {
                u32(p, v, 0, 1024, "a shard count", a.shards);
            } else if (k == "tls_min_version") {
                if (auto s = get_string(ctx, p, v)) {
                    if (*s != "1.2" && *s != "1.3") {
                        ctx.fail(p, fmt::format("{} is not a TLS version (1.2, 1.3)", quote(*s)));
                    } else {
                        a.tls_min_version = std::string(*s);
                    }
                }
            } else if (k == "key_type") {
                if (auto s = get_string(ctx, p, v)) {
                    if (*s == "ecdsa-p256") {
                        a.keys = key_type::ecdsa_p256;
                    } else if (*s == "rsa4096") {
                        a.keys = key_type::rsa4096;
                    } else {
                        ctx.fail(p, fmt::format("{} is not a key type (ecdsa-p256, rsa4096)", quote(*s)));
                    }
                }
            } else if (k == "cert_days") {
                u32(p, v, 1, 36500, "a number of days", a.cert_days);
            } else if (expect_type(ctx, p, v, element_type::OBJECT, "an object")) {
                auto& l = a.limits;
                for_members(ctx, p, v,
                            {"max_connections_per_shard", "max_connections_per_cn", "handshake_timeout_ms",
                             "idle_timeout_ms", "tunnel_idle_timeout_ms", "upstream_timeout_ms",
                             "max_queries_per_connection", "dns_cache_entries"},
                            [&](std::string_view lk, element lv, const std::string& lp) {
                                if (lk == "max_connections_per_shard") {
                                    u32(lp, lv, 1, 1000000, "a connection count", l.max_connections_per_shard);
                                } else if (lk == "max_connections_per_cn") {
                                    u32(lp, lv, 1, 1000000, "a connection count", l.max_connections_per_cn);
                                } else if (lk == "handshake_timeout_ms") {
                                    u32(lp, lv, 10, 600000, "a timeout in ms", l.handshake_timeout_ms);
                                } else if (lk == "idle_timeout_ms") {
                                    u32(lp, lv, 10, 86400000, "a timeout in ms", l.idle_timeout_ms);
                                } else if (lk == "tunnel_idle_timeout_ms") {
                                    u32(lp, lv, 10, 604800000, "a timeout in ms", l.tunnel_idle_timeout_ms);
                                } else if (lk == "upstream_timeout_ms") {
                                    u32(lp, lv, 10, 600000, "a timeout in ms", l.upstream_timeout_ms);
                                } else if (lk == "max_queries_per_connection") {
                                    u32(lp, lv, 1, 100000000, "a query count", l.max_queries_per_connection);
                                } else {
                                    u32(lp, lv, 0, 10000000, "an entry count", l.dns_cache_entries);
                                }
                            });
            }
        });
    return out;
}

std::vector<error> cross_check(const config& c) {
    std::vector<error> errors;
    auto fail = [&](std::string_view file, std::string path, std::string msg) {
        errors.push_back({std::string(file), std::move(path), std::move(msg)});
    };
    std::map<std::string_view, const endpoint*> endpoints;
    for (const auto& e : c.endpoints) {
        endpoints[e.cn] = &e;
    }
    std::map<std::string_view, const route*> routes;
    for (const auto& r : c.routes) {
        routes[r.service_cn] = &r;
    }
    std::map<std::string_view, const zone*> zones;
    for (const auto& z : c.zones) {
        zones[z.name] = &z;
        auto zp = key_path(z.name);
        if (!z.service_cn.empty() && !routes.count(z.service_cn)) {
            fail(zones_file, zp + ".service_cn", fmt::format("\"{}\" is not a service in routes.json", z.service_cn));
        }
        for (size_t i = 0; i < z.allowed_endpoints.size(); ++i) {
            const auto& cn = z.allowed_endpoints[i];
            auto it = endpoints.find(cn);
            auto p = fmt::format("{}.allowed_endpoints[{}]", zp, i);
            if (it == endpoints.end()) {
                fail(zones_file, p, fmt::format("\"{}\" is not a registered endpoint (endpoints.json)", cn));
            } else if (it->second->revoked) {
                fail(zones_file, p, fmt::format("\"{}\" is revoked", cn));
            }
        }
    }
    std::map<std::string, std::string> domain_owner;
    for (const auto& r : c.routes) {
        auto rp = key_path(r.service_cn);
        for (size_t i = 0; i < r.domains.size(); ++i) {
            const auto& d = r.domains[i];
            auto p = fmt::format("{}.domains[{}]", rp, i);
            auto [it, fresh] = domain_owner.emplace(d, r.service_cn);
            if (!fresh) {
                fail(routes_file, p,
                     it->second == r.service_cn
                         ? fmt::format("{} is listed twice", d)
                         : fmt::format("{} already belongs to service {}", d, it->second));
                continue;
            }
            auto z = zones.find(d);
            if (z != zones.end() && !z->second->service_cn.empty() && z->second->service_cn != r.service_cn) {
                fail(routes_file, p,
                     fmt::format("{} is served by {} in zones.json, not by {}", d, z->second->service_cn,
                                 r.service_cn));
            }
        }
    }
    for (const auto& [cn, ep] : endpoints) {
        if (routes.count(cn) && ep->kind != endpoint_kind::service) {
            fail(endpoints_file, key_path(cn) + ".kind", "a CN in routes.json must be of kind \"service\"");
        }
    }
    return errors;
}

parsed<config> load_dir(const std::string& dir) {
    parsed<config> out;
    auto read = [&](std::string_view name, bool required, std::string& text) {
        std::string path = dir + "/" + std::string(name), err;
        if (!fs::exists(path) && !required) {
            text = "{}";
            return true;
        }
        if (!fs::read_file(path, text, err)) {
            out.errors.push_back({std::string(name), "", err});
            return false;
        }
        return true;
    };
    std::string text;
    if (read(appliance_file, true, text)) {
        auto a = parse_appliance(text);
        out.value.app = std::move(a.value);
        out.errors.insert(out.errors.end(), a.errors.begin(), a.errors.end());
    }
    if (read(zones_file, false, text)) {
        auto z = parse_zones(text);
        out.value.zones = std::move(z.value);
        out.errors.insert(out.errors.end(), z.errors.begin(), z.errors.end());
    }
    if (read(routes_file, false, text)) {
        auto r = parse_routes(text);
        out.value.routes = std::move(r.value);
        out.errors.insert(out.errors.end(), r.errors.begin(), r.errors.end());
    }
    if (read(endpoints_file, false, text)) {
        auto e = parse_endpoints(text);
        out.value.endpoints = std::move(e.value);
        out.errors.insert(out.errors.end(), e.errors.begin(), e.errors.end());
    }
    if (out.ok()) {
        out.errors = cross_check(out.value);
    }
    if (!out.ok()) {
        out.value = {};
    }
    return out;
}

} // namespace zt::config
