// Quantities derived from a validated Config: batch arithmetic for a world size, attention phases.
#include <algorithm>
#include <climits>
#include <cstdint>

#include <fmt/format.h>

#include "lighthouse/config.h"

namespace lh {
using nlohmann::json;

int Config::grad_accum_steps(int world_size) const {
  if (world_size < 1)
    throw ConfigError("world_size", "must be >= 1, got " + std::to_string(world_size));
  const int64_t per_step = int64_t(data.micro_batch) * world_size;  // sequences per micro-step
  const int gb = training.global_batch, ga = training.grad_accum;
  const std::string ws = std::to_string(world_size);
  if (gb == 0) return std::max(ga, 1);
  if (ga == 0) {
    if (gb % per_step != 0)
      throw ConfigError("training.global_batch",
                        std::to_string(gb) + " is not divisible by data.micro_batch * world size = " +
                            std::to_string(data.micro_batch) + " * " + ws + " = " +
                            std::to_string(per_step));
    return static_cast<int>(gb / per_step);
  }
  if (int64_t(ga) * per_step != gb)
    throw ConfigError("training.global_batch",
                      std::to_string(gb) + " != training.grad_accum * data.micro_batch * world size = " +
                          std::to_string(ga) + " * " + std::to_string(data.micro_batch) + " * " +
                          ws + " = " + std::to_string(int64_t(ga) * per_step));
  return ga;
}

int Config::global_batch_sequences(int world_size) const {
  const int64_t n = int64_t(grad_accum_steps(world_size)) * data.micro_batch * world_size;
  if (n > INT_MAX) throw ConfigError("training.global_batch", "global batch does not fit in an int");
  return static_cast<int>(n);
}

int Config::phase_index_at(int step) const {
  for (size_t i = 0; i < attention.phases.size(); ++i)
    if (step < attention.phases[i].until_step) return static_cast<int>(i);
  return attention.phases.empty() ? 0 : static_cast<int>(attention.phases.size()) - 1;
}

const AttentionPhase& Config::phase_at(int step) const {
  if (attention.phases.empty()) {
    static const AttentionPhase kDenseForever{INT_MAX, "dense", json::object()};
    return kDenseForever;
  }
  return attention.phases[phase_index_at(step)];
}

double parameter_count(const ModelConfig& m) {
  const double C = m.dim, F = m.ffn_hidden, V = m.vocab_size, head = m.dim / m.n_heads;
  const double q = m.n_heads * head, kv = m.n_kv_heads * head;  // as q_dim(), kv_dim(), without int overflow
  const double per_layer = 2 * C + (q + 2 * kv) * C + C * q + 3 * F * C;  // norms, wqkv, wo, w_gate_up, w_down
  return V * C * (m.tied_embeddings ? 1 : 2) + double(m.n_layers) * per_layer + C;
}

namespace {
template <typename T>
void note_change(std::vector<std::string>& out, const char* key, const T& then, const T& now) {
  if (then != now) out.push_back(fmt::format("model.{} {} -> {}", key, then, now));
}
}  // namespace

std::vector<std::string> architecture_changes(const ModelConfig& then, const ModelConfig& now) {
  std::vector<std::string> out;
  note_change(out, "dim", then.dim, now.dim);
  note_change(out, "n_layers", then.n_layers, now.n_layers);
  note_change(out, "n_heads", then.n_heads, now.n_heads);
  note_change(out, "n_kv_heads", then.n_kv_heads, now.n_kv_heads);
  note_change(out, "ffn_hidden", then.ffn_hidden, now.ffn_hidden);
  note_change(out, "vocab_size", then.vocab_size, now.vocab_size);
  note_change(out, "tied_embeddings", then.tied_embeddings, now.tied_embeddings);
  return out;
}

std::vector<std::string> model_setting_changes(const ModelConfig& then, const ModelConfig& now) {
  std::vector<std::string> out;
  note_change(out, "max_seq_len", then.max_seq_len, now.max_seq_len);
  note_change(out, "rope_theta", then.rope_theta, now.rope_theta);
  note_change(out, "norm_eps", then.norm_eps, now.norm_eps);
  note_change(out, "init_std", then.init_std, now.init_std);
  return out;
}

}  // namespace lh
