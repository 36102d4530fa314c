// Causal scaled-dot-product attention through cuDNN's fused flash-attention engines, expressed as
// a graph of matmul/pointwise/reduction ops (../shared/CUDNN_SDPA.md explains why not SDPA_FWD).
// Arbitrary strides, so it reads q/k/v straight from the fused qkv activation [B, T, (H+2Hkv)*D]
// (dense layers) or from packed [B, H, S, D] buffers (Lighthouse's inner attention). GQA native:
// K/V are never repeated in memory. Plans are cached per shape; backward is the deterministic
// variant.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <array>
#include <map>
#include <memory>
#include <tuple>

#include "cudnn_graph.h"

namespace lh::cuda {

// Element strides of a [b, h, s, d] view (d must be innermost: stride 1).
using Strides4 = std::array<int64_t, 4>;

struct SdpaShape {
  int64_t b = 1, hq = 1, hk = 1, s = 1, d = 64;
  Strides4 q{}, k{}, v{}, o{};  // dq/dk/dv/do share the strides of q/k/v/o
  Strides4 stats{};             // of the fp32 log-sum-exp [b, hq, s, 1]
  auto key() const { return std::tie(b, hq, hk, s, d, q, k, v, o, stats); }
  bool operator<(const SdpaShape& x) const { return key() < x.key(); }
};

// Views of the fused qkv layout [B, T, (H + 2*Hkv) * D] and of an output [B, T, H*D].
SdpaShape fused_qkv_shape(int B, int T, int H, int Hkv, int D);
// Element offsets of K and V inside a fused qkv row.
inline int64_t fused_k_offset(int H, int D) { return int64_t(H) * D; }
inline int64_t fused_v_offset(int H, int Hkv, int D) { return int64_t(H + Hkv) * D; }

// The shape of one GQA group (hq / hk query heads sharing one kv head); pointers of group g are
// offset by g * group_offset(...) elements.
SdpaShape kv_group_shape(const SdpaShape& s);

class CudnnSdpa {
 public:
  CudnnSdpa();
  ~CudnnSdpa();
  CudnnSdpa(const CudnnSdpa&) = delete;
  CudnnSdpa& operator=(const CudnnSdpa&) = delete;
  void set_workspace_limit(size_t bytes) { workspace_limit_ = bytes; }
  // The deterministic backward (default) keeps per-tile dQ partials: its workspace grows with
  // heads x s^2 and is split into kv-head groups above the limit. The non-deterministic one
  // accumulates dQ with fp32 atomics in O(s) memory: not bitwise reproducible.
  void set_deterministic(bool on) {
    if (on != deterministic_) bwd_plans_.clear();
    deterministic_ = on;
  }
  // Builds the plans that forward and backward calls of this shape will use (kv-head groups where
  // the whole call is over the limit) and grows the workspace to what they need, so that memory
  // planning sees it as taken. Returns that workspace in bytes.
  size_t prepare(const SdpaShape& shape);

  // o = softmax(q k^T * scale + causal mask) v; stats [b, hq, s] = log-sum-exp per row (fp32).
  void forward(const SdpaShape& shape, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
               __nv_bfloat16* o, float* stats, float scale, cudaStream_t stream);
  // Writes dq, dk, dv (strides of q, k, v).
  void backward(const SdpaShape& shape, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                const __nv_bfloat16* o, const __nv_bfloat16* dout, const float* stats, __nv_bfloat16* dq,
                __nv_bfloat16* dk, __nv_bfloat16* dv, float scale, cudaStream_t stream);

 private:
  void* workspace(size_t bytes);
  // The workspace one call needs, scratch included (of one group's call where the shape splits).
  size_t forward_workspace(const SdpaShape& shape);
  size_t backward_workspace(const SdpaShape& shape);
  // The softmax_sum (and, non-deterministic, the zeroed fp32 dQ accumulator) scratch the backward
  // keeps in front of the plan's own workspace.
  size_t backward_scratch(const SdpaShape& shape) const;
  static size_t softmax_sum_bytes(const SdpaShape& shape);
  // A cached plan; null when its workspace exceeds the limit and the call should be split into
  // kv-head groups (deterministic backward plans grow with heads x sequence length).
  const CudnnPlan* plan(bool backward, const SdpaShape& shape);
  cudnnHandle_t handle_ = nullptr;
  std::map<SdpaShape, std::unique_ptr<CudnnPlan>> fwd_plans_, bwd_plans_;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  size_t workspace_limit_;
  bool deterministic_ = true;
};

}  // namespace lh::cuda
