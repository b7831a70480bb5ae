// Writes the config model back as JSON in the seed guide's formats (stable key
// order, two-space indent), so control can rewrite files that admins also edit.
#pragma once

#include "common/config/model.hh"

#include <string>
#include <string_view>

namespace zt::config {

std::string zones_json(const std::vector<zone>& zones);
std::string routes_json(const std::vector<route>& routes);
std::string endpoints_json(const std::vector<endpoint>& endpoints);
std::string appliance_json(const appliance& app);

/// A JSON string literal (quotes included), escaping as RFC 8259 requires.
std::string json_string(std::string_view s);

} // namespace zt::config
