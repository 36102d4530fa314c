#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "lighthouse/optimizer.h"

namespace lh {

AdamW::AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, Backend& backend)
    : AdamW(cfg, layout, backend, {{0, layout.total(), 0}}, layout.total()) {}

AdamW::AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, Backend& backend, std::vector<OwnedRange> owned,
             size_t shard_elements)
    : cfg_(cfg), layout_(layout), be_(backend), owned_(std::move(owned)) {
  for (const OwnedRange& r : owned_)
    if (r.begin > r.end || r.end > layout.total() || r.local + (r.end - r.begin) > shard_elements)
      throw std::logic_error("AdamW: owned range [" + std::to_string(r.begin) + ", " + std::to_string(r.end) +
                             ") at " + std::to_string(r.local) + " does not fit the layout or the shard");
  naming_purpose("AdamW's two moments (" + std::to_string(shard_elements) + " fp32 values each)", [&] {
    m_ = be_.allocate(be_.param_dtype(), shard_elements);
    v_ = be_.allocate(be_.param_dtype(), shard_elements);
  });
}

bool AdamW::whole_layout() const {
  return owned_.size() == 1 && owned_[0].begin == 0 && owned_[0].end == layout_.total() && owned_[0].local == 0;
}

double AdamW::grad_norm(const Tensor& grads) { return std::sqrt(be_.sum_squares(grads)); }

double AdamW::clip_scale(double norm) const {
  // As PyTorch's clip_grad_norm_: grad_clip / (norm + 1e-6), a hair under the threshold.
  return cfg_.grad_clip > 0.0 && norm > cfg_.grad_clip ? cfg_.grad_clip / (norm + 1e-6) : 1.0;
}

double AdamW::step(Tensor params, Tensor grads, Tensor compute_copy, double lr) {
  const double norm = grad_norm(grads);
  if (!whole_layout()) throw std::logic_error("AdamW::step: a sharded optimizer steps through DataParallel");
  apply(params, grads, compute_copy, lr, clip_scale(norm));
  return norm;
}

void AdamW::apply(Tensor params, Tensor shard_grads, Tensor compute_copy, double lr, double grad_scale) {
  ++steps_;
  for (const OwnedRange& r : owned_) {
    // One update per run of adjacent entries with the same weight decay (each element's update is
    // independent of the others, so the bits do not depend on how the range is cut): a layer's
    // projections go in two launches instead of four.
    size_t run_lo = 0, run_hi = 0;  // the current run [run_lo, run_hi); empty at first
    bool run_decay = false;
    auto flush = [&] {
      if (run_lo == run_hi) return;
      const size_t n = run_hi - run_lo, local = r.local + (run_lo - r.begin);
      const double wd = run_decay ? cfg_.weight_decay : 0.0;
      const Tensor copy = compute_copy.data ? compute_copy.slice(run_lo, n) : Tensor{};
      be_.adamw_update(params.slice(run_lo, n), shard_grads.slice(local, n), m_.slice(local, n), v_.slice(local, n),
                       copy, lr, cfg_.beta1, cfg_.beta2, cfg_.eps, wd, steps_, grad_scale);
    };
    for (const ParamEntry& e : layout_.entries()) {
      const size_t lo = std::max(e.offset, r.begin), hi = std::min(e.offset + e.numel, r.end);
      if (lo >= hi) continue;  // not in this range
      if (lo != run_hi || e.weight_decay != run_decay) {  // the entry starts a new run
        flush();
        run_lo = lo, run_decay = e.weight_decay;
      }
      run_hi = hi;
    }
    flush();
  }
}

}  // namespace lh
