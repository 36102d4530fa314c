#include <stdexcept>

#include "lighthouse/model.h"

namespace lh {

ParamLayout::ParamLayout(const ModelConfig& cfg) {
  const int64_t C = cfg.dim, V = cfg.vocab_size, F = cfg.ffn_hidden;
  add("embed", {V, C}, /*decay=*/false);
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    add(p + "attn_norm", {C}, false);
    add(p + "wqkv", {cfg.qkv_dim(), C}, true);
    add(p + "wo", {C, cfg.q_dim()}, true);
    add(p + "mlp_norm", {C}, false);
    add(p + "w_gate_up", {2 * F, C}, true);
    add(p + "w_down", {C, F}, true);
  }
  add("final_norm", {C}, false);
  if (!cfg.tied_embeddings) add("lm_head", {V, C}, true);
}

void ParamLayout::add(const std::string& name, std::vector<int64_t> shape, bool decay) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  entries_.push_back(ParamEntry{name, std::move(shape), total_, n, decay});
  total_ += n;
}

const ParamEntry* ParamLayout::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const ParamEntry& ParamLayout::at(const std::string& name) const {
  if (const ParamEntry* e = find(name)) return *e;
  throw std::out_of_range("no parameter named '" + name + "'");
}

}  // namespace lh
