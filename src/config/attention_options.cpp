#include "config/attention_options.h"

#include "config/json_reader.h"
#include "lighthouse/config.h"

namespace lh::config_detail {
namespace {
using nlohmann::json;

// dense: exact causal attention; takes no options yet.
void validate_dense_options(const json& options, const std::string& path, const AttentionContext&) {
  for (const auto& item : options.items())
    throw ConfigError(join_path(path, item.key()),
                      "unknown option: attention backend \"dense\" takes no options");
}

// lighthouse: pyramid, top-k selection, inner dense attention, scatter (lighthouse_options.cpp).
void validate_lighthouse_options(const json& options, const std::string& path, const AttentionContext& context) {
  parse_lighthouse_options(options, path, &context);
}

struct Backend {
  const char* name;
  void (*validate_options)(const json& options, const std::string& path, const AttentionContext& context);
};

// The one place that lists the attention backends.
const Backend kBackends[] = {
    {"dense", validate_dense_options},
    {"lighthouse", validate_lighthouse_options},
};
}  // namespace

std::vector<std::string> known_attention_backends() {
  std::vector<std::string> names;
  for (const auto& b : kBackends) names.push_back(b.name);
  return names;
}

void validate_attention_options(const std::string& backend, const json& options,
                                const std::string& backend_path, const std::string& options_path,
                                const AttentionContext& context) {
  for (const auto& b : kBackends) {
    if (backend == b.name) {
      if (!options.is_object())
        throw ConfigError(options_path, "expected an object, got " + describe(options));
      b.validate_options(options, options_path, context);
      return;
    }
  }
  std::string known;
  for (const auto& name : known_attention_backends()) known += (known.empty() ? "" : ", ") + name;
  throw ConfigError(backend_path, "unknown attention backend \"" + backend + "\" (known: " + known + ")");
}

}  // namespace lh::config_detail
