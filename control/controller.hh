// The admin operations of the seed's "Configuration Flow": init, service add,
// client add, authorize, deauthorize, revoke, list, status, reload. Each
// mutating command reads the files afresh (so hand edits are kept), applies
// the change, validates and compiles the result, and only then writes files
// and publishes: a bad change leaves files and the published table untouched.
#pragma once

#include "common/config/model.hh"
#include "control/store/store.hh"

#include <memory>
#include <string>
#include <vector>

namespace zt::control {

namespace ca {
class authority;
}

/// Where a validated config goes: compiled into a route table, written to the
/// data dir and published to the data plane. Implemented by ztdns-control.
class table_sink {
public:
    virtual ~table_sink() = default;
    /// Compiles `c`; returns "" when it was published, else the error (and
    /// nothing was published).
    virtual std::string publish(const config::config& c) = 0;
    /// Lines for `ztdns status`: generation, subscribers and what they adopted.
    virtual std::vector<std::string> status_lines() const = 0;
    /// For `ztdns metrics`: every data plane's counters, Prometheus text.
    virtual std::string metrics_text() const = 0;
};

/// A command's outcome: exit status and the text the CLI prints.
struct reply {
    int status = 0;
    std::string text;
};

/// Options of `ztdns init`.
struct init_options {
    std::string dir;
    std::string server_name = "ztdns.local";
    std::vector<std::string> proxy_addresses;
    std::vector<std::string> dot_listen;
    std::vector<std::string> proxy_listen;
    std::vector<std::string> upstreams;
    std::string admin_listen;
    config::key_type keys = config::key_type::ecdsa_p256;
    uint32_t days = 3650;
    bool force = false;
};

/// Creates a data dir: ztdns.json, empty zones/routes/endpoints, the CA and the
/// server certificate (SANs: server name and proxy addresses). Refuses an
/// initialized dir unless `force`. Run by `ztdns init` before control starts.
reply init_data_dir(const init_options& o);

class controller {
public:
    /// Loads the CA from the store. Throws if the dir is not initialized.
    controller(store& s, table_sink& sink);
    ~controller();

    /// Loads the files and publishes them. On a broken config, returns the
    /// errors (the caller keeps the last table file published).
    reply start();

    /// Runs one CLI command (argv without the program name). Control thread.
    reply run(const std::vector<std::string>& args);

    reply reload();

    /// The last config that was published (empty before start()).
    const config::config& current() const noexcept { return _current; }

private:
    reply service_add(const std::vector<std::string>& args);
    reply client_add(const std::vector<std::string>& args);
    reply set_authorized(const std::vector<std::string>& args, bool allow);
    reply revoke(const std::vector<std::string>& args);
    reply list(const std::vector<std::string>& args) const;
    reply status() const;
    reply metrics() const;
    /// The refusal of a command while the files on disk do not load.
    reply files_broken(const std::vector<config::error>& errors) const;
    /// Validates `next`, publishes it, then writes the files. `prev` is what is
    /// on disk now.
    reply commit(const config::config& prev, config::config&& next, std::string done);
    /// Re-issues the server certificate when the set of private names changed:
    /// it covers the server name, the proxy addresses and every zone (and its
    /// subdomains), so clients that verify the name they asked for (curl,
    /// browsers) accept the proxy. The data plane picks the new one up.
    void refresh_server_cert(const config::config& c);
    /// Writes cert, key (0600), ca.crt and endpoint.json into bundles/<cn>/.
    std::string write_bundle(const config::config& c, const config::endpoint& ep, const std::string& cert_pem,
                             const std::string& key_pem) const;

    store& _store;
    table_sink& _sink;
    std::unique_ptr<ca::authority> _ca;
    config::config _current;
    std::string _config_error; ///< why the files on disk are not what is published
};

} // namespace zt::control
