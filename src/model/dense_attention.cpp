// Dense causal attention: the backend's fused attention op, keeping each layer's log-sum-exp rows
// for the backward pass (which recomputes the probabilities from them).
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/attention_backends.h"

namespace lh {
namespace {

class DenseAttention final : public AttentionOp {
 public:
  explicit DenseAttention(std::function<bool(int)> runs_layer) : runs_layer_(std::move(runs_layer)) {}
  std::string name() const override { return "dense"; }

  void prepare_workspace(Backend& be, int /*n_layers*/, const AttentionShape& s) override {
    be.prepare_attention(s.B, s.T, s.H, s.Hkv, s.D);
  }

  void reserve(Backend& be, int n_layers, const AttentionShape& s) override {
    const size_t per_layer = s.tokens() * s.H;
    if (int(lse_.size()) == n_layers && per_layer <= per_layer_) return;
    lse_.clear();
    for (int l = 0; l < n_layers; ++l)
      lse_.push_back(!runs_layer_ || runs_layer_(l) ? be.allocate(be.param_dtype(), per_layer) : Buffer());
    per_layer_ = per_layer;
  }

  void forward(Backend& be, int layer, Tensor out, const Tensor& qkv, const AttentionShape& s) override {
    be.attention_forward(out, lse(layer, s), qkv, s.B, s.T, s.H, s.Hkv, s.D);
  }

  void backward(Backend& be, int layer, Tensor dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                const AttentionShape& s) override {
    be.attention_backward(dqkv, dout, qkv, out, lse(layer, s), s.B, s.T, s.H, s.Hkv, s.D);
  }

 private:
  Tensor lse(int layer, const AttentionShape& s) const {
    if (layer < 0 || layer >= int(lse_.size()) || !lse_[layer].view().data)
      throw std::logic_error("dense attention: reserve() not called for layer " + std::to_string(layer));
    return lse_[layer].slice(0, s.tokens() * s.H);
  }
  std::function<bool(int)> runs_layer_;
  std::vector<Buffer> lse_;  // per layer; empty for layers it does not run
  size_t per_layer_ = 0;
};

}  // namespace

std::unique_ptr<AttentionOp> make_dense_attention(std::function<bool(int)> runs_layer) {
  return std::make_unique<DenseAttention>(std::move(runs_layer));
}

}  // namespace lh
