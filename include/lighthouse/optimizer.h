// AdamW with decoupled weight decay and global-norm gradient clipping over the flat parameter
// allocation. The moments live in two allocations with the parameters' layout, so checkpoints and
// (later) ZeRO sharding can address them by the same names and offsets.
#pragma once
#include "lighthouse/backend.h"
#include "lighthouse/config.h"
#include "lighthouse/model.h"

namespace lh {

class AdamW {
 public:
  AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, Backend& backend);

  // Clips the gradients to the global L2 norm cfg.grad_clip (if > 0) and applies one update with
  // learning rate lr. Weight decay applies only to entries marked weight_decay. Returns the global
  // gradient norm before clipping. Steps are counted from 1. A non-empty compute_copy (the
  // model's low-precision weights) is refreshed from the updated master weights.
  double step(Tensor params, Tensor grads, Tensor compute_copy, double lr);
  // The global L2 norm of a gradient allocation (double accumulation, fixed order).
  double grad_norm(const Tensor& grads);

  int steps_taken() const { return steps_; }
  void set_steps_taken(int n) { steps_ = n; }
  Tensor m() const { return m_.view(); }
  Tensor v() const { return v_.view(); }
  const OptimizerConfig& config() const { return cfg_; }
  void set_config(const OptimizerConfig& cfg) { cfg_ = cfg; }

 private:
  OptimizerConfig cfg_;
  const ParamLayout& layout_;
  Backend& be_;
  Buffer m_, v_;
  int steps_ = 0;
};

}  // namespace lh
