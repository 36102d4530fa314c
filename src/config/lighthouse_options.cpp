// Parsing and validation of the "lighthouse" attention options (see lighthouse_options.h and
// docs/lighthouse.md). Each knob is checked on its own first, so the message names the knob; then
// the shape rules that tie the knobs to data.seq_len (lighthouse::Geometry::problem) and the layer
// list to model.n_layers.
#include <set>
#include <string>

#include "config/attention_options.h"
#include "config/json_reader.h"
#include "lighthouse/config.h"

namespace lh::config_detail {

LighthouseOptions parse_lighthouse_options(const nlohmann::json& options, const std::string& path,
                                           const AttentionContext* context) {
  using std::to_string;
  ObjectReader r(options, path);
  LighthouseOptions o;
  o.levels = r.get_int("levels", o.levels);
  o.pooling = r.get_int("pooling", o.pooling);
  o.topk = r.get_int("topk", o.topk);
  o.scorer = r.get_string("scorer", o.scorer);
  const nlohmann::json* dense = r.get_raw("dense_layers");
  r.finish();

  if (o.levels < 2) throw ConfigError(r.path_of("levels"), "must be >= 2, got " + to_string(o.levels));
  if (o.pooling < 2 || (o.pooling & (o.pooling - 1)) != 0)
    throw ConfigError(r.path_of("pooling"), "must be a power of two >= 2, got " + to_string(o.pooling));
  if (o.topk < lighthouse::kTileSlots || o.topk % lighthouse::kTileSlots != 0)
    throw ConfigError(r.path_of("topk"), "must be a positive multiple of " + to_string(lighthouse::kTileSlots) +
                                             ", got " + to_string(o.topk));
  if (o.scorer != "norm")
    throw ConfigError(r.path_of("scorer"), "must be \"norm\" (the dilated scorer is not implemented), got \"" +
                                               o.scorer + "\"");
  if (dense != nullptr) {
    const std::string list_path = r.path_of("dense_layers");
    if (!dense->is_array()) throw ConfigError(list_path, "expected a list of layer indices, got " + describe(*dense));
    std::set<int> seen;
    for (size_t i = 0; i < dense->size(); ++i) {
      const std::string at = index_path(list_path, i);
      const int layer = to_int((*dense)[i], at);
      if (!seen.insert(layer).second) throw ConfigError(at, "layer " + to_string(layer) + " is listed twice");
      if (context != nullptr && (layer < 0 || layer >= context->n_layers))
        throw ConfigError(at, "layer " + to_string(layer) + " is outside [0, model.n_layers = " +
                                  to_string(context->n_layers) + ")");
      if (layer < 0) throw ConfigError(at, "layer " + to_string(layer) + " must be >= 0");
      o.dense_layers.push_back(layer);
    }
  }
  if (context != nullptr) {
    const std::string why = o.geometry(context->seq_len).problem();
    if (!why.empty())
      throw ConfigError(path, "data.seq_len = " + to_string(context->seq_len) + ", levels = " +
                                  to_string(o.levels) + ", pooling = " + to_string(o.pooling) + ", topk = " +
                                  to_string(o.topk) + ": " + why);
  }
  return o;
}

}  // namespace lh::config_detail
