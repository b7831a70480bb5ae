// Admin operations (see controller.hh).
#include "control/controller.hh"

#include "common/config/parse.hh"
#include "common/config/write.hh"
#include "common/util/fs.hh"
#include "common/util/log.hh"
#include "control/ca/ca.hh"

#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include <fmt/format.h>

namespace zt::control {
namespace {

reply fail(std::string text) { return {1, std::move(text)}; }
reply usage(std::string_view u) { return {2, fmt::format("usage: ztdns {}", u)}; }

/// Flags of one command: `--name V`, repeatable ones collected in order,
/// switches without a value, and positional arguments.
struct flags {
    std::map<std::string, std::vector<std::string>> values;
    std::set<std::string> switches;
    std::vector<std::string> positional;
    std::string error;

    flags(const std::vector<std::string>& args, size_t from, std::initializer_list<std::string_view> with_value,
          std::initializer_list<std::string_view> without_value) {
        for (size_t i = from; i < args.size(); ++i) {
            const auto& a = args[i];
            if (a.rfind("--", 0) != 0) {
                positional.push_back(a);
                continue;
            }
            std::string name = a.substr(2), value;
            bool inline_value = false;
            if (auto eq = name.find('='); eq != std::string::npos) {
                value = name.substr(eq + 1);
                name = name.substr(0, eq);
                inline_value = true;
            }
            if (std::find(without_value.begin(), without_value.end(), name) != without_value.end()) {
                switches.insert(name);
            } else if (std::find(with_value.begin(), with_value.end(), name) != with_value.end()) {
                if (!inline_value) {
                    if (i + 1 >= args.size()) {
                        error = fmt::format("--{} needs a value", name);
                        return;
                    }
                    value = args[++i];
                }
                values[name].push_back(value);
            } else {
                error = fmt::format("unknown option --{}", name);
                return;
            }
        }
    }
    std::optional<std::string> one(const std::string& name) const {
        auto it = values.find(name);
        if (it == values.end()) {
            return std::nullopt;
        }
        return it->second.back();
    }
    std::vector<std::string> all(const std::string& name) const {
        auto it = values.find(name);
        return it == values.end() ? std::vector<std::string>{} : it->second;
    }
};

std::optional<config::key_type> key_type_of(const flags& f, config::key_type dflt, std::string& err) {
    auto k = f.one("key");
    if (!k) {
        return dflt;
    }
    if (*k == "rsa4096") {
        return config::key_type::rsa4096;
    }
    if (*k == "ecdsa-p256" || *k == "ecdsa") {
        return config::key_type::ecdsa_p256;
    }
    err = fmt::format("--key {}: not a key type (ecdsa-p256, rsa4096)", *k);
    return std::nullopt;
}

std::optional<uint32_t> days_of(const flags& f, uint32_t dflt, std::string& err) {
    auto d = f.one("days");
    if (!d) {
        return dflt;
    }
    char* end = nullptr;
    long v = std::strtol(d->c_str(), &end, 10);
    if (d->empty() || *end != '\0' || v < 1 || v > 36500) {
        err = fmt::format("--days {}: not a number of days (1-36500)", *d);
        return std::nullopt;
    }
    return static_cast<uint32_t>(v);
}

std::string port_of(const std::string& listen) { return listen.substr(listen.rfind(':') + 1); }

std::string host_port(const std::string& addr, const std::string& port) {
    return addr.find(':') != std::string::npos ? fmt::format("[{}]:{}", addr, port) : fmt::format("{}:{}", addr, port);
}

config::endpoint* find_endpoint(config::config& c, const std::string& cn) {
    for (auto& e : c.endpoints) {
        if (e.cn == cn) {
            return &e;
        }
    }
    return nullptr;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) {
        out += (i ? std::string(sep) : "") + v[i];
    }
    return out;
}

/// A plain text table: columns padded to their widest cell.
std::string text_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> width;
    for (const auto& r : rows) {
        width.resize(std::max(width.size(), r.size()));
        for (size_t i = 0; i < r.size(); ++i) {
            width[i] = std::max(width[i], r[i].size());
        }
    }
    std::string out;
    for (const auto& r : rows) {
        std::string line;
        for (size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) {
                line += std::string(width[i] - r[i].size() + 2, ' ');
            }
        }
        out += line + "\n";
    }
    return out;
}

} // namespace

reply init_data_dir(const init_options& o) {
    layout paths{o.dir};
    if (fs::exists(paths.file(config::appliance_file)) && !o.force) {
        return fail(fmt::format("{} is already initialized ({} exists); use --force to start over", o.dir,
                                paths.file(config::appliance_file)));
    }
    config::appliance app;
    app.server_name = o.server_name;
    app.proxy_addresses = o.proxy_addresses;
    if (!o.dot_listen.empty()) {
        app.dot_listen = o.dot_listen;
    }
    if (!o.proxy_listen.empty()) {
        app.proxy_listen = o.proxy_listen;
    }
    if (!o.upstreams.empty()) {
        app.upstreams = o.upstreams;
    }
    if (!o.admin_listen.empty()) {
        app.admin_listen = o.admin_listen;
    }
    app.keys = o.keys;
    app.cert_days = o.days;
    // Validate through the same parser that loads the file later.
    auto text = config::appliance_json(app);
    if (auto p = config::parse_appliance(text); !p.ok()) {
        std::string msg;
        for (const auto& e : p.errors) {
            msg += (msg.empty() ? "" : "\n") + e.str();
        }
        return fail(msg);
    }
    if (app.proxy_addresses.empty()) {
        return fail("--proxy-address is required: the address DNS hands out for private names");
    }
    for (const auto& d : {paths.dir, paths.dir + "/ca", paths.dir + "/server", paths.dir + "/issued",
                          paths.dir + "/bundles"}) {
        if (auto err = fs::make_dirs(d, 0700); !err.empty()) {
            return fail(err);
        }
    }
    try {
        auto authority = ca::authority::create(app.keys, std::max<uint32_t>(app.cert_days, 3650));
        auto server = authority.issue_server(app.server_name, app.proxy_addresses, app.keys, app.cert_days);
        struct file {
            std::string path;
            std::string text;
            mode_t mode;
        };
        // Keys first, ztdns.json last: a dir without ztdns.json is not initialized.
        const file files[] = {
            {paths.ca_key(), authority.key_pem(), 0600},
            {paths.ca_cert(), authority.cert_pem(), 0644},
            {paths.server_key(), server.key_pem, 0600},
            {paths.server_cert(), server.cert_pem, 0644},
            {paths.file(config::zones_file), "{}\n", 0644},
            {paths.file(config::routes_file), "{}\n", 0644},
            {paths.file(config::endpoints_file), "{}\n", 0644},
            {paths.file(config::appliance_file), text, 0644},
        };
        for (const auto& f : files) {
            if (auto err = fs::write_atomic(f.path, std::string_view(f.text), f.mode); !err.empty()) {
                return fail(err);
            }
        }
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    return {0, fmt::format("Initialized {}\n  CA: {}\n  server certificate: {} (CN {}, SANs {})\n", o.dir,
                           paths.ca_cert(), paths.server_cert(), app.server_name, join(app.proxy_addresses, ", "))};
}

controller::controller(store& s, table_sink& sink) : _store(s), _sink(sink) {
    const auto& p = _store.paths();
    std::string cert, key, err;
    if (!fs::read_file(p.ca_cert(), cert, err) || !fs::read_file(p.ca_key(), key, err)) {
        throw std::runtime_error(fmt::format("{} (run `ztdns init --data-dir {}` first)", err, p.dir));
    }
    _ca = std::make_unique<ca::authority>(ca::authority::load(cert, key));
}

controller::~controller() = default;

reply controller::start() { return reload(); }

reply controller::reload() {
    auto loaded = _store.load();
    if (!loaded.ok()) {
        std::string msg;
        for (const auto& e : loaded.errors) {
            msg += (msg.empty() ? "" : "\n") + e.str();
        }
        _config_error = msg;
        return fail(msg + "\nreload refused: the current table keeps serving");
    }
    if (auto err = _sink.publish(loaded.value); !err.empty()) {
        _config_error = err;
        return fail(err + "\nreload refused: the current table keeps serving");
    }
    _config_error.clear();
    _current = std::move(loaded.value);
    refresh_server_cert(_current);
    log::info("Control: config loaded ({} zones, {} routes, {} endpoints)", _current.zones.size(),
              _current.routes.size(), _current.endpoints.size());
    return {0, fmt::format("Reloaded: {} zones, {} routes, {} endpoints\n", _current.zones.size(),
                           _current.routes.size(), _current.endpoints.size())};
}

reply controller::commit(const config::config& prev, config::config&& next, std::string done) {
    if (auto errs = config::cross_check(next); !errs.empty()) {
        std::string msg;
        for (const auto& e : errs) {
            msg += (msg.empty() ? "" : "\n") + e.str();
        }
        return fail(msg);
    }
    // Publish first: compiling can still fail (an unresolvable backend) and
    // then nothing may be written.
    if (auto err = _sink.publish(next); !err.empty()) {
        return fail(err);
    }
    if (auto err = _store.save(prev, next); !err.empty()) {
        // The data plane runs the new table but the files are old: put the old
        // table back so files and table agree.
        auto undo = _sink.publish(prev);
        return fail(fmt::format("{}\nnothing changed{}", err, undo.empty() ? "" : " on disk; republish failed: " + undo));
    }
    _current = std::move(next);
    _config_error.clear();
    refresh_server_cert(_current);
    return {0, std::move(done)};
}

void controller::refresh_server_cert(const config::config& c) {
    // Beyond this many names a certificate gets too large to send on every
    // handshake; then only the first ones are covered (and a warning says so).
    constexpr size_t max_names = 500;
    std::vector<std::string> sans = c.app.proxy_addresses;
    size_t zones = 0;
    for (const auto& z : c.zones) {
        if (zones++ == max_names) {
            log::warn("Control: more than {} zones: the server certificate covers the first {} only", max_names,
                      max_names);
            break;
        }
        sans.push_back(z.name);
        sans.push_back("*." + z.name);
    }
    std::string wanted = c.app.server_name;
    for (const auto& s : sans) {
        wanted += "\n" + s;
    }
    const auto& p = _store.paths();
    std::string have, err;
    std::string names_file = p.dir + "/server/names";
    if (fs::read_file(names_file, have, err) && have == wanted) {
        return;
    }
    try {
        auto server = _ca->issue_server(c.app.server_name, sans, c.app.keys, c.app.cert_days);
        // Key first: the data plane loads a pair only when key and certificate match.
        for (auto [path, text, mode] : {std::tuple{p.server_key(), &server.key_pem, mode_t(0600)},
                                        std::tuple{p.server_cert(), &server.cert_pem, mode_t(0644)},
                                        std::tuple{names_file, &wanted, mode_t(0644)}}) {
            if (auto e = fs::write_atomic(path, std::string_view(*text), mode); !e.empty()) {
                log::error("Control: cannot renew the server certificate: {}", e);
                return;
            }
        }
        log::info("Control: server certificate renewed for {} and {} zone(s)", c.app.server_name,
                  std::min(c.zones.size(), max_names));
    } catch (const std::exception& e) {
        log::error("Control: cannot renew the server certificate: {}", e.what());
    }
}

std::string controller::write_bundle(const config::config& c, const config::endpoint& ep, const std::string& cert_pem,
                                     const std::string& key_pem) const {
    const auto& p = _store.paths();
    auto dir = p.bundle_dir(ep.cn);
    if (auto err = fs::make_dirs(dir, 0700); !err.empty()) {
        return err;
    }
    std::vector<std::string> dot, proxy;
    for (const auto& a : c.app.proxy_addresses) {
        dot.push_back(config::json_string(host_port(a, port_of(c.app.dot_listen.front()))));
        proxy.push_back(config::json_string(host_port(a, port_of(c.app.proxy_listen.front()))));
    }
    auto endpoint_json = fmt::format("{{\n  \"cn\": {},\n  \"name\": {},\n  \"kind\": \"{}\",\n"
                                     "  \"server_name\": {},\n  \"dot_servers\": [{}],\n  \"proxies\": [{}],\n"
                                     "  \"cert\": \"cert.pem\",\n  \"key\": \"key.pem\",\n  \"ca\": \"ca.crt\"\n}}\n",
                                     config::json_string(ep.cn), config::json_string(ep.name),
                                     ep.kind == config::endpoint_kind::client ? "client" : "service",
                                     config::json_string(c.app.server_name), join(dot, ", "), join(proxy, ", "));
    std::string ca_pem, err;
    if (!fs::read_file(p.ca_cert(), ca_pem, err)) {
        return err;
    }
    struct file {
        std::string name, text;
        mode_t mode;
    };
    const file files[] = {{"key.pem", key_pem, 0600},
                          {"cert.pem", cert_pem, 0644},
                          {"ca.crt", ca_pem, 0644},
                          {"endpoint.json", endpoint_json, 0644}};
    for (const auto& f : files) {
        if (auto e = fs::write_atomic(dir + "/" + f.name, std::string_view(f.text), f.mode); !e.empty()) {
            return e;
        }
    }
    return fs::write_atomic(p.issued_cert(ep.cn), std::string_view(cert_pem), 0644);
}

reply controller::files_broken(const std::vector<config::error>& errors) const {
    return fail(fmt::format("the files in {} have errors; fix them first:\n{}", _store.paths().dir, errors[0].str()));
}

reply controller::run(const std::vector<std::string>& args) {
    if (args.empty()) {
        return usage("<command> ...; try `ztdns help`");
    }
    const auto& cmd = args[0];
    if (cmd == "status") {
        return status();
    }
    if (cmd == "list") {
        return list(args);
    }
    if (cmd == "metrics") {
        return metrics();
    }
    if (cmd == "reload") {
        return reload();
    }
    if (cmd == "service" && args.size() >= 2 && args[1] == "add") {
        return service_add(args);
    }
    if (cmd == "client" && args.size() >= 2 && args[1] == "add") {
        return client_add(args);
    }
    if (cmd == "authorize") {
        return set_authorized(args, true);
    }
    if (cmd == "deauthorize") {
        return set_authorized(args, false);
    }
    if (cmd == "revoke") {
        return revoke(args);
    }
    return {2, fmt::format("unknown command `{}`; try `ztdns help`", join(args, " "))};
}

reply controller::service_add(const std::vector<std::string>& args) {
    constexpr std::string_view u = "service add --name NAME --host HOST --port PORT --domain DOMAIN [--domain ...] "
                                   "[--service-endpoint] [--key rsa4096] [--days N]";
    flags f(args, 2, {"name", "host", "port", "domain", "key", "days"}, {"service-endpoint"});
    if (!f.error.empty() || !f.positional.empty()) {
        return usage(u);
    }
    auto name = f.one("name"), host = f.one("host"), port = f.one("port");
    auto domains = f.all("domain");
    if (!name || !host || !port || domains.empty()) {
        return usage(u);
    }
    auto loaded = _store.load();
    if (!loaded.ok()) {
        return files_broken(loaded.errors);
    }
    config::config prev = loaded.value, next = loaded.value;
    std::string err;
    auto keys = key_type_of(f, next.app.keys, err);
    auto days = days_of(f, next.app.cert_days, err);
    if (!keys || !days) {
        return fail(err);
    }
    char* end = nullptr;
    long p = std::strtol(port->c_str(), &end, 10);
    if (port->empty() || *end != '\0' || p < 1 || p > 65535) {
        return fail(fmt::format("--port {}: not a port (1-65535)", *port));
    }
    if (host->empty() || host->size() > 253) {
        return fail("--host must be 1-253 characters");
    }
    if (next.app.proxy_addresses.empty()) {
        return fail("ztdns.json has no proxy_addresses: DNS would have no address to hand out");
    }
    std::vector<std::string> names;
    for (const auto& d : domains) {
        std::string why;
        auto n = config::normalize_dns_name(d, why);
        if (!n) {
            return fail(fmt::format("--domain {}: not a valid DNS name: {}", d, why));
        }
        for (const auto& z : next.zones) {
            if (z.name == *n) {
                return fail(fmt::format("--domain {}: zone {} exists already (service {})", d, *n, z.service_cn));
            }
        }
        for (const auto& r : next.routes) {
            if (std::find(r.domains.begin(), r.domains.end(), *n) != r.domains.end()) {
                return fail(fmt::format("--domain {}: already belongs to service {}", d, r.service_cn));
            }
        }
        names.push_back(*n);
    }
    ca::issued cert;
    try {
        cert = _ca->issue_endpoint(config::endpoint_kind::service, *name, *keys, *days,
                                   [&](const std::string& cn) { return find_endpoint(next, cn) != nullptr; });
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    config::endpoint ep{cert.cn, *name, config::endpoint_kind::service, cert.serial_hex, cert.not_after, false};
    next.endpoints.push_back(ep);
    config::route r;
    r.service_cn = cert.cn;
    r.name = *name;
    r.backends.push_back({*host, static_cast<uint16_t>(p), 1});
    r.domains = names;
    // Reached through connections its ztdns-endpoint --service dials out: no inbound port needed.
    r.via_service_endpoint = f.switches.count("service-endpoint") > 0;
    next.routes.push_back(r);
    for (const auto& n : names) {
        config::zone z;
        z.name = n;
        config::record_set apex{"@", {}};
        for (const auto& a : next.app.proxy_addresses) {
            std::string why;
            auto rec = config::parse_record((a.find(':') != std::string::npos ? "AAAA " : "A ") + a, why);
            apex.records.push_back(*rec);
        }
        z.records.push_back(apex);
        z.service_cn = cert.cn;
        z.allowed_endpoints.push_back(cert.cn);
        next.zones.push_back(z);
    }
    if (auto e = write_bundle(next, ep, cert.cert_pem, cert.key_pem); !e.empty()) {
        return fail(e);
    }
    auto done = fmt::format("Service added: {} ({}) -> {}:{}\n", cert.cn, *name, *host, p);
    for (const auto& n : names) {
        done += fmt::format("  zone {} -> {} (proxy), allowed: {}\n", n, join(next.app.proxy_addresses, ", "), cert.cn);
    }
    done += fmt::format("  bundle: {}/\n  next: ztdns authorize <client CN> {}\n", _store.paths().bundle_dir(cert.cn),
                        names[0]);
    auto res = commit(prev, std::move(next), done);
    if (res.status == 0) {
        log::info("Control: service {} ({}) added for {} -> {}:{}", cert.cn, *name, join(names, ", "), *host, p);
    }
    return res;
}

reply controller::client_add(const std::vector<std::string>& args) {
    constexpr std::string_view u = "client add NAME [--key rsa4096] [--days N]";
    flags f(args, 2, {"key", "days", "name"}, {});
    auto name = f.one("name");
    if (!name && f.positional.size() == 1) {
        name = f.positional[0];
    }
    if (!f.error.empty() || !name || f.positional.size() > (f.one("name") ? 0u : 1u)) {
        return usage(u);
    }
    auto loaded = _store.load();
    if (!loaded.ok()) {
        return files_broken(loaded.errors);
    }
    config::config prev = loaded.value, next = loaded.value;
    std::string err;
    auto keys = key_type_of(f, next.app.keys, err);
    auto days = days_of(f, next.app.cert_days, err);
    if (!keys || !days) {
        return fail(err);
    }
    ca::issued cert;
    try {
        cert = _ca->issue_endpoint(config::endpoint_kind::client, *name, *keys, *days,
                                   [&](const std::string& cn) { return find_endpoint(next, cn) != nullptr; });
    } catch (const std::exception& e) {
        return fail(e.what());
    }
    config::endpoint ep{cert.cn, *name, config::endpoint_kind::client, cert.serial_hex, cert.not_after, false};
    next.endpoints.push_back(ep);
    if (auto e = write_bundle(next, ep, cert.cert_pem, cert.key_pem); !e.empty()) {
        return fail(e);
    }
    auto done = fmt::format("Client added: {} ({}), valid until {}\n  bundle: {}/\n  next: ztdns authorize {} <domain>\n",
                            cert.cn, *name, config::format_time(cert.not_after), _store.paths().bundle_dir(cert.cn),
                            cert.cn);
    auto res = commit(prev, std::move(next), done);
    if (res.status == 0) {
        log::info("Control: client {} ({}) added", cert.cn, *name);
    }
    return res;
}

reply controller::set_authorized(const std::vector<std::string>& args, bool allow) {
    if (args.size() != 3) {
        return usage(allow ? "authorize CN DOMAIN" : "deauthorize CN DOMAIN");
    }
    const auto& cn = args[1];
    std::string why;
    auto domain = config::normalize_dns_name(args[2], why);
    if (!domain) {
        return fail(fmt::format("{}: not a valid DNS name: {}", args[2], why));
    }
    auto loaded = _store.load();
    if (!loaded.ok()) {
        return files_broken(loaded.errors);
    }
    config::config prev = loaded.value, next = loaded.value;
    auto* ep = find_endpoint(next, cn);
    if (!ep) {
        return fail(fmt::format("{} is not a registered endpoint (see `ztdns list`)", cn));
    }
    if (ep->revoked && allow) {
        return fail(fmt::format("{} is revoked", cn));
    }
    auto z = std::find_if(next.zones.begin(), next.zones.end(), [&](const auto& zz) { return zz.name == *domain; });
    if (z == next.zones.end()) {
        return fail(fmt::format("{} is not a zone (see `ztdns list`)", *domain));
    }
    auto& acl = z->allowed_endpoints;
    auto it = std::find(acl.begin(), acl.end(), cn);
    if (allow) {
        if (it != acl.end()) {
            return {0, fmt::format("{} is already allowed for {}\n", cn, *domain)};
        }
        acl.push_back(cn);
    } else {
        if (it == acl.end()) {
            return {0, fmt::format("{} was not allowed for {}\n", cn, *domain)};
        }
        acl.erase(it);
    }
    auto res = commit(prev, std::move(next),
                      fmt::format("{} {} {}\n", cn, allow ? "may now resolve and reach" : "may no longer reach", *domain));
    if (res.status == 0) {
        log::info("Control: {} {} for {}", cn, allow ? "authorized" : "deauthorized", *domain);
    }
    return res;
}

reply controller::revoke(const std::vector<std::string>& args) {
    if (args.size() != 2) {
        return usage("revoke CN");
    }
    const auto& cn = args[1];
    auto loaded = _store.load();
    if (!loaded.ok()) {
        return files_broken(loaded.errors);
    }
    config::config prev = loaded.value, next = loaded.value;
    auto* ep = find_endpoint(next, cn);
    if (!ep) {
        return fail(fmt::format("{} is not a registered endpoint (see `ztdns list`)", cn));
    }
    if (ep->revoked) {
        return {0, fmt::format("{} was already revoked\n", cn)};
    }
    ep->revoked = true;
    std::vector<std::string> removed;
    for (auto& z : next.zones) {
        auto it = std::find(z.allowed_endpoints.begin(), z.allowed_endpoints.end(), cn);
        if (it != z.allowed_endpoints.end()) {
            z.allowed_endpoints.erase(it);
            removed.push_back(z.name);
        }
    }
    auto res = commit(prev, std::move(next),
                      fmt::format("Revoked {}{}\n", cn, removed.empty() ? "" : "; removed from " + join(removed, ", ")));
    if (res.status == 0) {
        log::info("Control: revoked {}", cn);
    }
    return res;
}

reply controller::list(const std::vector<std::string>& args) const {
    flags f(args, 1, {}, {"json"});
    if (!f.error.empty() || !f.positional.empty()) {
        return usage("list [--json]");
    }
    const auto& c = _current;
    if (f.switches.count("json")) {
        return {0, fmt::format("{{\"zones\": {},\n\"routes\": {},\n\"endpoints\": {}}}\n", config::zones_json(c.zones),
                               config::routes_json(c.routes), config::endpoints_json(c.endpoints))};
    }
    std::string out = "SERVICES\n";
    std::vector<std::vector<std::string>> rows{{"CN", "NAME", "BACKENDS", "DOMAINS"}};
    for (const auto& r : c.routes) {
        std::vector<std::string> backends;
        for (const auto& b : r.backends) {
            backends.push_back(host_port(b.host, std::to_string(b.port)));
        }
        rows.push_back({r.service_cn, r.name, join(backends, ","), join(r.domains, ",")});
    }
    out += text_table(rows) + "\nZONES\n";
    rows = {{"ZONE", "RECORDS", "SERVICE", "ALLOWED"}};
    for (const auto& z : c.zones) {
        std::vector<std::string> recs;
        for (const auto& rs : z.records) {
            for (const auto& r : rs.records) {
                recs.push_back(rs.label + " " + r.text);
            }
        }
        rows.push_back({z.name, join(recs, ","), z.service_cn.empty() ? "-" : z.service_cn,
                        z.allowed_endpoints.empty() ? "-" : join(z.allowed_endpoints, ",")});
    }
    out += text_table(rows) + "\nENDPOINTS\n";
    rows = {{"CN", "KIND", "NAME", "NOT AFTER", "STATE"}};
    auto now = static_cast<int64_t>(std::time(nullptr));
    for (const auto& e : c.endpoints) {
        rows.push_back({e.cn, e.kind == config::endpoint_kind::client ? "client" : "service", e.name,
                        config::format_time(e.not_after),
                        e.revoked ? "revoked" : (e.not_after < now ? "expired" : "active")});
    }
    out += text_table(rows);
    return {0, out};
}

reply controller::status() const {
    std::string out = fmt::format("data dir: {}\n", _store.paths().dir);
    out += _config_error.empty() ? "config: ok\n"
                                 : fmt::format("config: NOT LOADED, the previous table keeps serving:\n{}\n", _config_error);
    out += fmt::format("zones: {}  routes: {}  endpoints: {}\n", _current.zones.size(), _current.routes.size(),
                       _current.endpoints.size());
    for (const auto& line : _sink.status_lines()) {
        out += line + "\n";
    }
    return {_config_error.empty() ? 0 : 1, out};
}

reply controller::metrics() const {
    std::string text = _sink.metrics_text();
    if (text.empty()) {
        return fail("no data plane has shared its counters (is ztdns-dataplane running and connected?)");
    }
    return {0, text};
}

} // namespace zt::control
