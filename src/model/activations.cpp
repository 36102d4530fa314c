#include "model/activations.h"

#include <optional>
#include <stdexcept>
#include <string>

namespace lh {
namespace {
// Per-layer slots, in the order of LayerActivations.
enum LayerSlot { kX, kLn1, kRstd1, kQkv, kAttn, kMid, kLn2, kRstd2, kGateUp, kHidden, kLayerSlots };

// Whether a layer keeps its own copy of a slot (else it shares one copy with every other layer that
// does not keep it; backward refills it by recomputation before the layer reads it). Full
// recompute keeps what cannot be recomputed cheaply: the layer input and the attention output.
// Selective also keeps every GEMM output, so backward reruns only the norms and SwiGLU, which read
// and write memory but do no matmuls.
bool kept_per_layer(Recompute mode, int slot) {
  switch (mode) {
    case Recompute::kNone: return true;
    case Recompute::kFull: return slot == kX || slot == kAttn;
    case Recompute::kSelective: return slot == kX || slot == kQkv || slot == kAttn || slot == kMid || slot == kGateUp;
    case Recompute::kAuto: break;  // resolved before an arena is laid out
  }
  return true;
}
}  // namespace

ActivationArena::ActivationArena(Backend& be, const ModelConfig& cfg, int B, int T, const LayerModes& modes)
    : ActivationArena(cfg, B, T, modes) {
  data_ = be.allocate(be.act_dtype(), act_per_token_ * max_tokens_);
  stats_ = be.allocate(be.param_dtype(), stats_per_token_ * max_tokens_);
  ids_ = be.allocate(DType::I32, 2 * size_t(max_tokens_));
}

size_t ActivationArena::bytes(const Backend& be, const ModelConfig& cfg, int B, int T, const LayerModes& modes) {
  const ActivationArena layout(cfg, B, T, modes);
  const size_t n = size_t(layout.max_tokens_);
  return layout.act_per_token_ * n * dtype_size(be.act_dtype()) +
         layout.stats_per_token_ * n * dtype_size(be.param_dtype()) + 2 * n * dtype_size(DType::I32);
}

ActivationArena::ActivationArena(const ModelConfig& cfg, int B, int T, const LayerModes& modes)
    : cfg_(cfg), max_tokens_(B * T), modes_(modes) {
  if (modes.size() != size_t(cfg.n_layers))
    throw std::logic_error("ActivationArena: " + std::to_string(modes.size()) + " recompute modes for " +
                           std::to_string(cfg.n_layers) + " layers");
  for (Recompute m : modes)
    if (m == Recompute::kAuto) throw std::logic_error("ActivationArena: resolve recompute auto first");
  const size_t C = cfg.dim, F = cfg.ffn_hidden;
  const size_t per_layer_widths[kLayerSlots] = {C, C, 1, size_t(cfg.qkv_dim()), size_t(cfg.q_dim()),
                                                C, C, 1, 2 * F, F};
  std::optional<Slot> shared[kLayerSlots];  // laid out by the first layer that does not keep it
  for (int l = 0; l < cfg.n_layers; ++l)
    for (int s = 0; s < kLayerSlots; ++s) {
      const bool stats = s == kRstd1 || s == kRstd2;
      if (kept_per_layer(modes[l], s)) {
        layer_slots_.push_back(reserve(per_layer_widths[s], stats));
      } else {
        if (!shared[s]) shared[s] = reserve(per_layer_widths[s], stats);
        layer_slots_.push_back(*shared[s]);
      }
    }
  final_x_ = reserve(C);
  final_ln_ = reserve(C);
  final_rstd_ = reserve(1, true);
  logits_ = reserve(size_t(cfg.logits_row_stride()));
  losses_ = reserve(1, true);
  logits_lse_ = reserve(1, true);
  dresid_ = reserve(C);
  dln_ = reserve(C);
  dqkv_ = reserve(cfg.qkv_dim());
  dattn_ = reserve(cfg.q_dim());
  dgate_up_ = reserve(2 * F);
  dhidden_ = reserve(F);
}

ActivationArena::Slot ActivationArena::reserve(size_t per_token, bool stats) {
  // Offsets are in units of "per token" elements times max_tokens, so a slot's first N tokens are
  // contiguous.
  size_t& total = stats ? stats_per_token_ : act_per_token_;
  Slot s{total, per_token, stats};
  total += per_token;
  return s;
}

Tensor ActivationArena::view(const Slot& s, int N) const {
  const Buffer& b = s.stats ? stats_ : data_;
  return b.slice(s.offset * size_t(max_tokens_), s.per_token * size_t(N));
}

LayerActivations ActivationArena::layer(int l, int N) const {
  const Slot* s = &layer_slots_[size_t(l) * kLayerSlots];
  return LayerActivations{view(s[kX], N),   view(s[kLn1], N),   view(s[kRstd1], N),  view(s[kQkv], N),
                          view(s[kAttn], N), view(s[kMid], N), view(s[kLn2], N), view(s[kRstd2], N),
                          view(s[kGateUp], N), view(s[kHidden], N)};
}

Tensor ActivationArena::final_x(int N) const { return view(final_x_, N); }
Tensor ActivationArena::final_ln(int N) const { return view(final_ln_, N); }
Tensor ActivationArena::final_rstd(int N) const { return view(final_rstd_, N); }
Tensor ActivationArena::logits(int N) const { return view(logits_, N); }
Tensor ActivationArena::losses(int N) const { return view(losses_, N); }
Tensor ActivationArena::logits_lse(int N) const { return view(logits_lse_, N); }
Tensor ActivationArena::tokens(int N) const { return ids_.slice(0, N); }
Tensor ActivationArena::targets(int N) const { return ids_.slice(max_tokens_, N); }
Tensor ActivationArena::dresid(int N) const { return view(dresid_, N); }
Tensor ActivationArena::dln(int N) const { return view(dln_, N); }
Tensor ActivationArena::dqkv(int N) const { return view(dqkv_, N); }
Tensor ActivationArena::dattn(int N) const { return view(dattn_, N); }
Tensor ActivationArena::dgate_up(int N) const { return view(dgate_up_, N); }
Tensor ActivationArena::dhidden(int N) const { return view(dhidden_, N); }

}  // namespace lh
