// Causal scaled-dot-product attention through cuDNN's fused flash-attention engines, expressed as
// a graph of matmul/pointwise/reduction ops that cuDNN fuses (its dedicated SDPA_FWD operation has
// no causal mask before cuDNN 9.21, and a graph holding SDPA_BWD fails to build).
// Arbitrary strides, so it reads q/k/v straight from the fused qkv activation [B, T, (H+2Hkv)*D]
// (dense layers) or from packed [B, H, S, D] buffers (Lighthouse's inner attention). GQA native:
// K/V are never repeated in memory. Plans are cached per shape; backward is the deterministic
// variant.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <array>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <tuple>

#include "cudnn_graph.h"
#include "kernels.h"  // round_up_scratch
#include "memory_cap.h"

namespace lh::cuda {

// training.attention_backward "auto" (the default): our flash backward from this sequence length
// on, cuDNN's deterministic backward below. In the 270M training step on an H200
// (docs/benchmarks.md) ours was 0.9-2.7% faster at 98K, where cuDNN's O(heads x N^2) workspace
// (18 GiB per head) also costs activation memory that recompute auto could use, 0.7-1.1% faster at
// 80K, 0.4% faster at 72K, 0.4-1.1% slower at 64K, within noise at 32K and ~3% slower at 8 x 4K:
// the two cross between 64K and 80K, within a step's noise there. The length is each call's sequence length: a Lighthouse layer's inner attention
// counts its selected entries (18,432 at 98K with k1536).
constexpr int64_t kFlashAutoMinLength = 81920;

// Element strides of a [b, h, s, d] view (d must be innermost: stride 1).
using Strides4 = std::array<int64_t, 4>;

struct SdpaShape {
  int64_t b = 1, hq = 1, hk = 1, s = 1, d = 64;
  int64_t skv = 0;              // key length; 0: s (self-attention). Causal mask aligned top-left
  Strides4 q{}, k{}, v{}, o{};  // dq/dk/dv/do share the strides of q/k/v/o, unless dq is set
  Strides4 stats{};             // of the fp32 log-sum-exp [b, hq, s, 1]
  Strides4 dq{};                // all zero: those of q
  int64_t kv_len() const { return skv ? skv : s; }
  const Strides4& dq_strides() const { return dq[3] ? dq : q; }
  auto key() const { return std::tie(b, hq, hk, s, d, skv, q, k, v, o, stats, dq); }
  bool operator<(const SdpaShape& x) const { return key() < x.key(); }
};

// Views of the fused qkv layout [B, T, (H + 2*Hkv) * D] and of an output [B, T, H*D].
SdpaShape fused_qkv_shape(int B, int T, int H, int Hkv, int D);
// Element offsets of K and V inside a fused qkv row.
inline int64_t fused_k_offset(int H, int D) { return int64_t(H) * D; }
inline int64_t fused_v_offset(int H, int Hkv, int D) { return int64_t(H + Hkv) * D; }

// The shape of a call over kv_heads of the kv heads and their query heads (hq / hk per kv head);
// the group starting at kv head i has its pointers offset by i heads (i * hq / hk query heads).
SdpaShape kv_group_shape(const SdpaShape& s, int64_t kv_heads);

class CudnnSdpa {
 public:
  CudnnSdpa();
  ~CudnnSdpa();
  CudnnSdpa(const CudnnSdpa&) = delete;
  CudnnSdpa& operator=(const CudnnSdpa&) = delete;
  void set_workspace_limit(size_t bytes) {
    workspace_limit_ = bytes;
    kv_chunk_widths_.clear();
  }
  // The deterministic backward (default) needs a workspace that grows with heads x s^2 (about 2
  // bytes per score of the s x s matrix per head). Above the limit a call is split into kv-head
  // groups, and a group that is still over it into key chunks (see backward_kv_chunks). The non-deterministic backward accumulates
  // dQ with fp32 atomics in O(s) memory: not bitwise reproducible.
  void set_deterministic(bool on) {
    if (on != deterministic_) bwd_plans_.clear(), kv_chunk_widths_.clear();
    deterministic_ = on;
  }
  // The deterministic backward through our own kernel (flash_backward.h) instead of cuDNN's, for
  // calls whose sequence is at least min_length long (0: all) and whose shape and pointers it
  // supports (elsewhere cuDNN's). Off in a new CudnnSdpa; the CUDA backend always sets it, from
  // training.attention_backward or LH_ATTENTION_BACKWARD (auto by default). Its O(N) scratch
  // ignores the workspace limit.
  void set_flash_backward(bool on, int64_t min_length = 0) {
    flash_backward_ = on;
    flash_min_length_ = min_length;
    flash_reported_.clear();  // LH_CUDNN_VERBOSE reports each shape's choice again
  }
  // Testing: fill the workspace with this byte (0-255) before every attention call, cuDNN's or our
  // flash backward's (-1, the default: leave it). cuDNN's GQA backward reads workspace bytes that
  // nothing wrote (compute-sanitizer initcheck flags its fmha_reduce_head kernel); a test fills
  // zero, NaN and huge-number bytes to show results do not depend on them.
  void set_workspace_fill(int byte) {
    if (byte < -1 || byte > 255) throw std::invalid_argument("set_workspace_fill: not a byte value or -1");
    workspace_fill_ = byte;
  }
  // Builds the plans that forward and backward calls of this shape will use (kv-head groups where
  // the whole call is over the limit) and grows the workspace to what they need, so that memory
  // planning sees it as taken. Returns that workspace in bytes.
  size_t prepare(const SdpaShape& shape);
  // An emulated smaller device (memory_cap.h) that workspace allocations must stay under; the
  // workspace limit becomes a quarter of it, as on a card of that size (unless
  // LH_CUDNN_WORKSPACE_LIMIT_MB sets it).
  void set_memory_cap(const MemoryCap& cap);
  // The workspace held now, and its release (the next call or prepare takes what it needs again).
  size_t workspace_bytes() const { return workspace_bytes_; }
  void release_workspace();

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
  // A cached plan (built on first use).
  const CudnnPlan& plan(bool backward, const SdpaShape& shape);
  // How many kv heads one call takes: all of them, or the largest divisor of hk whose call fits
  // the workspace limit (1 at least; a single head over the limit takes key chunks instead).
  int64_t kv_heads_per_call(bool backward, const SdpaShape& shape);
  // Deterministic backward of one kv-head group over the limit: key chunks [k0, k0 + w) each
  // against queries [k0, s). Each chunk's call writes its dK, dV rows whole; the dQ partials are
  // summed in fp32 in chunk order. Width 0: no chunking needed.
  int64_t kv_chunk_width(const SdpaShape& shape);
  static SdpaShape kv_chunk_shape(const SdpaShape& shape, int64_t k0, int64_t width);
  size_t kv_chunked_workspace(const SdpaShape& shape, int64_t width, bool first_chunk_only = false);
  void backward_kv_chunks(const SdpaShape& shape, int64_t width, const __nv_bfloat16* q, const __nv_bfloat16* k,
                          const __nv_bfloat16* v, const __nv_bfloat16* o, const __nv_bfloat16* dout,
                          const float* stats, __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float scale,
                          cudaStream_t stream);
  // One backward call whose scratch and plan workspace start at ws (backward_workspace bytes).
  void execute_backward(const SdpaShape& shape, const __nv_bfloat16* q, const __nv_bfloat16* k,
                        const __nv_bfloat16* v, const __nv_bfloat16* o, const __nv_bfloat16* dout, const float* stats,
                        __nv_bfloat16* dq, __nv_bfloat16* dk, __nv_bfloat16* dv, float scale, char* ws,
                        cudaStream_t stream);
  cudnnHandle_t handle_ = nullptr;
  std::map<SdpaShape, std::unique_ptr<CudnnPlan>> fwd_plans_, bwd_plans_;
  std::map<SdpaShape, int64_t> kv_chunk_widths_;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  MemoryCap cap_;
  size_t workspace_limit_;
  bool deterministic_ = true;
  bool flash_backward_ = false;
  int64_t flash_min_length_ = 0;
  int workspace_fill_ = -1;
  void fill_workspace(void* ws, size_t bytes, cudaStream_t stream) const;
  const bool verbose_ = std::getenv("LH_CUDNN_VERBOSE") != nullptr;  // print plans and choices to stderr
  bool use_flash(const SdpaShape& shape) const;
  std::set<SdpaShape> flash_reported_;  // shapes whose backward choice LH_CUDNN_VERBOSE has printed
  void report_flash_choice(const SdpaShape& shape, bool taken);
};

}  // namespace lh::cuda
