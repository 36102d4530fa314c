// Attention backends: causal self-attention over the fused, RoPE-rotated qkv activation
// [B, T, (H + 2*Hkv) * D] producing [B, T, H * D]. One implementation per backend name ("dense",
// "lighthouse"); the trainer picks one per phase. A backend may keep per-layer state between
// forward and backward (softmax statistics, selections), so calls name their layer.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "lighthouse/backend.h"
#include "lighthouse/config.h"

namespace lh {

struct AttentionShape {
  int B, T, H, Hkv, D;
  size_t tokens() const { return size_t(B) * T; }
};

class AttentionOp {
 public:
  virtual ~AttentionOp() = default;
  virtual std::string name() const = 0;
  // Sizes the per-layer saved state for shapes up to `max_shape`; called before forward.
  virtual void reserve(Backend& be, int n_layers, const AttentionShape& max_shape) = 0;
  // Takes now the library workspace that calls of this shape will need (Backend::prepare_*), so
  // that memory planning (training.recompute auto) sees it; otherwise it is taken on first use.
  virtual void prepare_workspace(Backend& /*be*/, int /*n_layers*/, const AttentionShape& /*shape*/) {}
  virtual void forward(Backend& be, int layer, Tensor out, const Tensor& qkv, const AttentionShape& s) = 0;
  // Writes dqkv (all of Q, K and V) from dout, given the forward's inputs and output.
  virtual void backward(Backend& be, int layer, Tensor dqkv, const Tensor& dout, const Tensor& qkv,
                        const Tensor& out, const AttentionShape& s) = 0;
};

// Builds the backend named in an attention phase; options were validated with the config.
std::unique_ptr<AttentionOp> make_attention(const AttentionPhase& phase, const ModelConfig& model);

}  // namespace lh
