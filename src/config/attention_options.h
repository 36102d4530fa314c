// The attention backends a config may name, and validation of each backend's `options` object.
// Adding a backend = one entry in the table in attention_options.cpp (name + options validator),
// plus its documentation in docs/config.md.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lh::config_detail {

// Names accepted by attention.phases[i].attention, in table order.
std::vector<std::string> known_attention_backends();

// Throws ConfigError naming `backend_path` for an unknown backend, or a path under `options_path`
// for options the backend does not accept.
void validate_attention_options(const std::string& backend, const nlohmann::json& options,
                                const std::string& backend_path, const std::string& options_path);

}  // namespace lh::config_detail
