// AdamW with decoupled weight decay and global-norm gradient clipping over the flat parameter
// allocation. The optimizer owns a set of ranges of that allocation: all of it for one process,
// one rank's chunks of every bucket under ZeRO-1 data parallelism (src/train/data_parallel.h). Its
// moments, like the reduced gradients it is handed, are one contiguous "shard" buffer in which each
// owned range sits at its own offset.
#pragma once
#include <cstddef>
#include <vector>

#include "lighthouse/backend.h"
#include "lighthouse/config.h"
#include "lighthouse/model.h"

namespace lh {

// Elements [begin, end) of the flat layout, kept at [local, local + end - begin) of the shard.
struct OwnedRange {
  size_t begin = 0, end = 0;
  size_t local = 0;
};

class AdamW {
 public:
  // The whole layout (one process).
  AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, Backend& backend);
  // A shard of shard_elements elements holding `owned` (ranges inside the layout, disjoint, each
  // within the shard buffer).
  AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, Backend& backend, std::vector<OwnedRange> owned,
        size_t shard_elements);

  // Single process: clips the gradients to the global L2 norm cfg.grad_clip (if > 0) and applies
  // one update with learning rate lr. A non-empty compute_copy (the model's low-precision weights)
  // is refreshed from the updated master weights. Returns the norm before clipping.
  double step(Tensor params, Tensor grads, Tensor compute_copy, double lr);

  // One update of the owned ranges: params and compute_copy are whole (padded) allocations,
  // shard_grads is the shard buffer of reduced gradients, read times grad_scale (clipping) and
  // not written. Weight decay applies only to entries marked weight_decay; entries straddling a
  // range are updated on their intersection. Steps are counted from 1.
  void apply(Tensor params, Tensor shard_grads, Tensor compute_copy, double lr, double grad_scale);

  // The clip factor for a global gradient norm (1 when clipping is off or not needed).
  double clip_scale(double norm) const;
  double grad_norm(const Tensor& grads);  // L2 norm, double accumulation, fixed order

  const std::vector<OwnedRange>& owned() const { return owned_; }
  bool whole_layout() const;  // owns every element at its own offset (one process)
  int steps_taken() const { return steps_; }
  void set_steps_taken(int n) { steps_ = n; }
  Tensor m() const { return m_.view(); }  // the shard buffer of first moments
  Tensor v() const { return v_.view(); }

 private:
  OptimizerConfig cfg_;
  const ParamLayout& layout_;
  Backend& be_;
  std::vector<OwnedRange> owned_;
  Buffer m_, v_;
  int steps_ = 0;
};

}  // namespace lh
