// The attention backends a config may name, and validation of each backend's `options` object.
// Adding a backend = one entry in the table in attention_options.cpp (name + options validator),
// plus its documentation in docs/config.md.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lighthouse/lighthouse_options.h"

namespace lh::config_detail {

// What a backend's options may be checked against besides themselves (sequence length, depth).
struct AttentionContext {
  int seq_len = 0;   // data.seq_len
  int n_layers = 0;  // model.n_layers
};

// Names accepted by attention.phases[i].attention, in table order.
std::vector<std::string> known_attention_backends();

// Throws ConfigError naming `backend_path` for an unknown backend, or a path under `options_path`
// for options the backend does not accept.
void validate_attention_options(const std::string& backend, const nlohmann::json& options,
                                const std::string& backend_path, const std::string& options_path,
                                const AttentionContext& context);

// The "lighthouse" options, typed and range-checked (errors name paths under `path`). The checks
// that need the model and data (geometry, layer indices) run only when `context` is given.
LighthouseOptions parse_lighthouse_options(const nlohmann::json& options, const std::string& path,
                                           const AttentionContext* context = nullptr);

}  // namespace lh::config_detail
