#include <algorithm>
#include <cmath>

#include "lighthouse/optimizer.h"

namespace lh {

AdamW::AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, Backend& backend, size_t begin, size_t end)
    : cfg_(cfg), layout_(layout), be_(backend), begin_(begin), end_(end == 0 ? layout.total() : end) {
  m_ = be_.allocate(be_.param_dtype(), end_ - begin_);
  v_ = be_.allocate(be_.param_dtype(), end_ - begin_);
}

double AdamW::grad_norm(const Tensor& grads) { return std::sqrt(be_.sum_squares(grads)); }

double AdamW::clip_scale(double norm) const {
  // The small constant keeps the factor finite when the norm is exactly the threshold.
  return cfg_.grad_clip > 0.0 && norm > cfg_.grad_clip ? cfg_.grad_clip / (norm + 1e-6) : 1.0;
}

double AdamW::step(Tensor params, Tensor grads, Tensor compute_copy, double lr) {
  const double norm = grad_norm(grads);
  apply(params, grads.slice(begin_, end_ - begin_), compute_copy, lr, clip_scale(norm));
  return norm;
}

void AdamW::apply(Tensor params, Tensor shard_grads, Tensor compute_copy, double lr, double grad_scale) {
  if (grad_scale != 1.0) be_.scale_inplace(shard_grads, grad_scale);
  ++steps_;
  for (const ParamEntry& e : layout_.entries()) {
    const size_t lo = std::max(e.offset, begin_), hi = std::min(e.offset + e.numel, end_);
    if (lo >= hi) continue;  // entirely in another rank's shard
    const size_t n = hi - lo, local = lo - begin_;
    const double wd = e.weight_decay ? cfg_.weight_decay : 0.0;
    const Tensor copy = compute_copy.data ? compute_copy.slice(lo, n) : Tensor{};
    be_.adamw_update(params.slice(lo, n), shard_grads.slice(local, n), m_.slice(local, n), v_.slice(local, n), copy,
                     lr, cfg_.beta1, cfg_.beta2, cfg_.eps, wd, steps_);
  }
}

}  // namespace lh
