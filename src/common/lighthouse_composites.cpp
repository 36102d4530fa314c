// The default Lighthouse composites: the stages in the reference order (ops/lighthouse_reference.h),
// which is what the CPU backend runs and what a fused backend must reproduce.
#include "lighthouse/backend.h"

namespace lh {

void Backend::lighthouse_select_gather(Tensor q, Tensor k, Tensor v, Tensor idx, const Tensor& qkv, Tensor qpyr,
                                       Tensor kpyr, Tensor vpyr, Tensor sq, Tensor sk, int B, int H, int Hkv, int D,
                                       const lighthouse::Geometry& g) {
  lighthouse_pyramid_forward(qpyr, kpyr, vpyr, qkv, B, H, Hkv, D, g);
  lighthouse_norm_scores(sq, qpyr, B, H, D, g);
  lighthouse_norm_scores(sk, kpyr, B, Hkv, D, g);
  lighthouse_select(idx, sq, sk, B, H, Hkv, g);
  lighthouse_gather_forward(q, qpyr, idx, B, H, H, D, g);
  lighthouse_gather_forward(k, kpyr, idx, B, H, Hkv, D, g);
  lighthouse_gather_forward(v, vpyr, idx, B, H, Hkv, D, g);
}

void Backend::lighthouse_gather_pyramid_backward(Tensor dqkv, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                                 const Tensor& idx, Tensor dqpyr, Tensor dkpyr, Tensor dvpyr, int B,
                                                 int H, int Hkv, int D, const lighthouse::Geometry& g) {
  lighthouse_gather_backward(dqpyr, dq, idx, B, H, H, D, g);
  lighthouse_gather_backward(dkpyr, dk, idx, B, H, Hkv, D, g);
  lighthouse_gather_backward(dvpyr, dv, idx, B, H, Hkv, D, g);
  lighthouse_pyramid_backward(dqkv, dqpyr, dkpyr, dvpyr, B, H, Hkv, D, g);
}

}  // namespace lh
