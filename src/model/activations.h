// The activation arena of the Llama model: everything the backward pass reads, sized for a
// maximum (B, T), plus the backward pass's scratch buffers. Activations live in one allocation of
// the backend's act_dtype; per-row statistics (rstd, losses) in one of its param_dtype.
#pragma once
#include <vector>

#include "lighthouse/backend.h"
#include "lighthouse/config.h"

namespace lh {

struct LayerActivations {
  Tensor x;         // [N, C]  residual stream entering the layer
  Tensor ln1;       // [N, C]  attention-norm output
  Tensor rstd1;     // [N]     (param dtype)
  Tensor qkv;       // [N, qkv_dim] after RoPE
  Tensor attn;      // [N, q_dim] attention output (before wo)
  Tensor mid;       // [N, C]  residual stream after the attention block
  Tensor ln2;       // [N, C]
  Tensor rstd2;     // [N]     (param dtype)
  Tensor gate_up;   // [N, 2F]
  Tensor hidden;    // [N, F]  SwiGLU output
};

class ActivationArena {
 public:
  // One recompute mode per layer: none, selective or full (auto is resolved before).
  using LayerModes = std::vector<Recompute>;
  // A layer without recompute keeps all its slots; with it, only some (activations.cpp,
  // kept_per_layer), and shares the others with every layer that does not keep them either:
  // backward refills them by recomputation.
  ActivationArena(Backend& be, const ModelConfig& cfg, int B, int T, const LayerModes& modes);
  // What that constructor would allocate, in bytes, without allocating.
  static size_t bytes(const Backend& be, const ModelConfig& cfg, int B, int T, const LayerModes& modes);
  const LayerModes& layer_modes() const { return modes_; }
  int max_tokens() const { return max_tokens_; }
  // Views for the first N tokens (row-major, so any N <= max_tokens is a prefix).
  LayerActivations layer(int l, int N) const;
  Tensor final_x(int N) const;    // [N, C] residual stream after the last layer
  Tensor final_ln(int N) const;   // [N, C]
  Tensor final_rstd(int N) const; // [N]
  Tensor logits(int N) const;     // [N, V], rows cfg.logits_row_stride() apart; reused for dlogits
  Tensor losses(int N) const;     // [N]
  Tensor logits_lse(int N) const; // [N] log-sum-exp of each logits row (the loss's backward)
  Tensor tokens(int N) const;     // [N] int32
  Tensor targets(int N) const;    // [N] int32
  // Backward scratch.
  Tensor dresid(int N) const;     // [N, C] gradient of the residual stream
  Tensor dln(int N) const;        // [N, C]
  Tensor dqkv(int N) const;       // [N, qkv_dim]
  Tensor dattn(int N) const;      // [N, q_dim]
  Tensor dgate_up(int N) const;   // [N, 2F]
  Tensor dhidden(int N) const;    // [N, F]

 private:
  // Lays out the slots without allocating.
  ActivationArena(const ModelConfig& cfg, int B, int T, const LayerModes& modes);
  struct Slot { size_t offset, per_token; bool stats; };
  Slot reserve(size_t per_token, bool stats = false);
  Tensor view(const Slot& s, int N) const;

  ModelConfig cfg_;
  int max_tokens_;
  LayerModes modes_;
  size_t act_per_token_ = 0, stats_per_token_ = 0;
  std::vector<Slot> layer_slots_;  // kLayerSlots per layer
  Slot final_x_, final_ln_, final_rstd_, logits_, losses_, logits_lse_;
  Slot dresid_, dln_, dqkv_, dattn_, dgate_up_, dhidden_;
  Buffer data_;   // act dtype
  Buffer stats_;  // param dtype
  Buffer ids_;  // tokens then targets, int32
};

}  // namespace lh
