// The data directory: control is its single writer (an flock on DIR/.lock makes
// it so). Knows the layout, loads the config, and writes every file atomically,
// ordering multi-file changes so that every prefix of the writes is consistent.
#pragma once

#include "common/config/parse.hh"

#include <string>

namespace zt::control {

/// Paths inside a data dir.
struct layout {
    std::string dir;
    std::string file(std::string_view name) const { return dir + "/" + std::string(name); }
    std::string ca_cert() const { return dir + "/ca/ca.crt"; }
    std::string ca_key() const { return dir + "/ca/ca.key"; }
    std::string server_cert() const { return dir + "/server/server.crt"; }
    std::string server_key() const { return dir + "/server/server.key"; }
    std::string issued_cert(const std::string& cn) const { return dir + "/issued/" + cn + ".crt"; }
    std::string bundle_dir(const std::string& cn) const { return dir + "/bundles/" + cn; }
    std::string table_file() const { return dir + "/route.table"; }
    std::string control_socket() const { return dir + "/control.sock"; }
    std::string table_socket() const { return dir + "/table.sock"; }
    std::string lock_file() const { return dir + "/.lock"; }
};

/// Holds the data dir lock for its lifetime. Control plane only.
class store {
public:
    /// Takes the lock; throws std::runtime_error naming the dir if another
    /// process holds it or the dir cannot be used.
    explicit store(std::string dir);
    ~store();
    store(const store&) = delete;
    store& operator=(const store&) = delete;

    const layout& paths() const noexcept { return _paths; }

    /// Reads and validates all config files.
    config::parsed<config::config> load() const;

    /// Writes the files of `next` that differ from `prev`, each atomically.
    /// When endpoints were revoked or removed, zones go first (nothing may
    /// reference a revoked CN); otherwise endpoints, then routes, then zones
    /// (nothing may reference what is not yet written). Returns "" or the error.
    std::string save(const config::config& prev, const config::config& next) const;

private:
    layout _paths;
    int _lock_fd = -1;
};

} // namespace zt::control
