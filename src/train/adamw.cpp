#include <cmath>

#include "lighthouse/optimizer.h"

namespace lh {

AdamW::AdamW(const OptimizerConfig& cfg, const ParamLayout& layout, Backend& backend)
    : cfg_(cfg), layout_(layout), be_(backend) {
  m_ = be_.allocate(be_.param_dtype(), layout_.total());
  v_ = be_.allocate(be_.param_dtype(), layout_.total());
}

double AdamW::grad_norm(const Tensor& grads) { return std::sqrt(be_.sum_squares(grads)); }

double AdamW::step(Tensor params, Tensor grads, Tensor compute_copy, double lr) {
  const double norm = grad_norm(grads);
  // The small constant keeps the clip factor finite when the norm is exactly the threshold.
  if (cfg_.grad_clip > 0.0 && norm > cfg_.grad_clip) be_.scale_inplace(grads, cfg_.grad_clip / (norm + 1e-6));
  ++steps_;
  for (const ParamEntry& e : layout_.entries()) {
    const double wd = e.weight_decay ? cfg_.weight_decay : 0.0;
    const Tensor copy = compute_copy.data ? compute_copy.slice(e.offset, e.numel) : Tensor{};
    be_.adamw_update(params.slice(e.offset, e.numel), grads.slice(e.offset, e.numel), m_.slice(e.offset, e.numel),
                     v_.slice(e.offset, e.numel), copy, lr, cfg_.beta1, cfg_.beta2, cfg_.eps, wd, steps_);
  }
  return norm;
}

}  // namespace lh
