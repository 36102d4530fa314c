// AdamW with decoupled weight decay and global-norm gradient clipping over the flat parameter
// allocation. The moments cover a contiguous range [begin, end) of that allocation: all of it for
// one process, one rank's shard under ZeRO-1 data parallelism (src/train/data_parallel.h).
#pragma once
#include <cstddef>

#include "lighthouse/backend.h"
#include "lighthouse/config.h"
#include "lighthouse/model.h"

namespace lh {

class AdamW {
 public:
  // Moments for elements [begin, end) of the flat layout; end = 0 means the whole layout.
  AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, Backend& backend, size_t begin = 0, size_t end = 0);

  // Single process: clips the gradients to the global L2 norm cfg.grad_clip (if > 0) and applies
  // one update with learning rate lr. A non-empty compute_copy (the model's low-precision weights)
  // is refreshed from the updated master weights. Returns the norm before clipping.
  double step(Tensor params, Tensor grads, Tensor compute_copy, double lr);

  // One update of the owned range: params and compute_copy are whole (padded) allocations,
  // shard_grads holds the gradients of [begin, end) only, already reduced; they are first scaled
  // by grad_scale (clipping). Weight decay applies only to entries marked weight_decay; entries
  // straddling the range are updated on their intersection. Steps are counted from 1.
  void apply(Tensor params, Tensor shard_grads, Tensor compute_copy, double lr, double grad_scale);

  // The clip factor for a global gradient norm (1 when clipping is off or not needed).
  double clip_scale(double norm) const;
  double grad_norm(const Tensor& grads);  // L2 norm, double accumulation, fixed order

  size_t begin() const { return begin_; }
  size_t end() const { return end_; }
  int steps_taken() const { return steps_; }
  void set_steps_taken(int n) { steps_ = n; }
  Tensor m() const { return m_.view(); }  // [end - begin]
  Tensor v() const { return v_.view(); }
  const OptimizerConfig& config() const { return cfg_; }
  void set_config(const OptimizerConfig& cfg) { cfg_ = cfg; }

 private:
  OptimizerConfig cfg_;
  const ParamLayout& layout_;
  Backend& be_;
  size_t begin_, end_;
  Buffer m_, v_;
  int steps_ = 0;
};

}  // namespace lh
