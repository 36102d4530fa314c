// Host-side launchers of the Lighthouse attention kernels (issue #5). Semantics and layouts are those
// of the CPU reference, include/lighthouse/ops/lighthouse_reference.h, with the CUDA backend's types:
// data (pyramids, sub-sequences, qkv, out) bf16, scores fp32, indices int32; fp32 accumulation.
// Every launcher is asynchronous on `s` and deterministic: each output element has exactly one
// writer that sums its inputs in a fixed order (no float atomics). Grids are grid-stride loops or
// 1D grids in x, so no sequence length runs into a grid-dimension limit.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "lighthouse/ops/lighthouse_geometry.h"

namespace lh::cuda {

using bf16 = __nv_bfloat16;
using lighthouse::Geometry;

// Where level 0 comes from when the pyramids hold only the coarse levels (the fused path): the
// fused qkv rows [B, N, row_heads * D], this part's heads starting at column head first_head.
struct Level0Source {
  const bf16* base = nullptr;  // null: level 0 is in the pyramid
  int64_t N = 0;
  int row_heads = 0, first_head = 0;
};
// The level-0 gradients for the fused pyramid backward: the sub-sequence gradients of q, k, v
// [B, H, S, D] and the inverse index pos [B, H, P].
struct Level0Grads {
  const bf16 *dq = nullptr, *dk = nullptr, *dv = nullptr;
  const int32_t* pos = nullptr;  // null: level 0 is in the pyramid gradients
  int64_t S = 0;
};

// ---- lighthouse_pyramid.cu ----
// qkv [B, N, (H + 2*Hkv) * D] -> qpyr [B, H, P, D], kpyr / vpyr [B, Hkv, P, D]; D % 8 == 0.
void lighthouse_pyramid_forward(bf16* qpyr, bf16* kpyr, bf16* vpyr, const bf16* qkv, int B, int H, int Hkv, int D,
                                const Geometry& g, cudaStream_t s);
// Levels 1..L-1 only, in one pass over qkv (level-0 rows of the pyramids are not written);
// the same bits as lighthouse_pyramid_forward there.
void lighthouse_coarse_pyramid_forward(bf16* qpyr, bf16* kpyr, bf16* vpyr, const bf16* qkv, int B, int H, int Hkv,
                                       int D, const Geometry& g, cudaStream_t s);
// The coarse levels and both norm score tensors (as lighthouse_norm_scores_qkv) in that one pass
// where the head dim allows (D / 8 a power of two up to 16) and L is 2..4; two passes otherwise.
void lighthouse_coarse_pyramid_scores_forward(bf16* qpyr, bf16* kpyr, bf16* vpyr, float* sq, float* sk,
                                              const bf16* qkv, int B, int H, int Hkv, int D, const Geometry& g,
                                              cudaStream_t s);
// The same entries by the per-entry kernel (each level re-reads its windows from qkv).
void lighthouse_coarse_pyramid_per_entry(bf16* qpyr, bf16* kpyr, bf16* vpyr, const bf16* qkv, int B, int H, int Hkv,
                                         int D, const Geometry& g, cudaStream_t s);
// dqkv written: each base position pulls dpyr(l, t / p^l) / p^l, levels ascending; level 0 from
// `level0` instead when given.
void lighthouse_pyramid_backward(bf16* dqkv, const bf16* dqpyr, const bf16* dkpyr, const bf16* dvpyr, int B, int H,
                                 int Hkv, int D, const Geometry& g, cudaStream_t s, const Level0Grads& level0 = {});
// The same dqkv with every level pulled from the sub-sequence gradients (grads.pos set), no dpyr
// needed: the bits of gather_backward of the coarse levels + lighthouse_pyramid_backward. For
// L = 2..4; returns false (nothing launched) for other depths.
bool lighthouse_pyramid_backward_pulled(bf16* dqkv, int B, int H, int Hkv, int D, const Geometry& g,
                                        const Level0Grads& grads, cudaStream_t s);
// score [B, Hx, P]: level 0 = ||x||_2 with the squares summed in the CPU reference's fp32 order
// (kNormChunk chunks, then pairwise: both backends produce the same float bits), levels >= 1 =
// window max. D <= 256.
void lighthouse_norm_scores(float* score, const bf16* pyr, int B, int Hx, int D, const Geometry& g, cudaStream_t s);
// Both score tensors with level 0 read straight from qkv: sq [B, H, P], sk [B, Hkv, P].
void lighthouse_norm_scores_qkv(float* sq, float* sk, const bf16* qkv, int B, int H, int Hkv, int D,
                                const Geometry& g, cudaStream_t s);

// ---- lighthouse_select.cu ----
// Bytes of `scratch` lighthouse_select needs: 0 when a tile's entries fit in shared memory, else a
// global buffer for the tile-local sort.
size_t lighthouse_select_scratch_bytes(int B, int H, const Geometry& g);
// idx [B, H, S]: the reference's cascade and causal order, index for index.
void lighthouse_select(int32_t* idx, const float* sq, const float* sk, int B, int H, int Hkv, const Geometry& g,
                       void* scratch, cudaStream_t s);

// ---- lighthouse_gather_scatter.cu ----
// The inverse of an index row: pos [B, H, P] = sub-sequence position of each pyramid entry or -1.
// Gather backward and the scatter forward read it; it is rebuilt from idx on every call (a memset
// and one write per entry), so stale maps can never be used.
size_t lighthouse_inverse_bytes(int B, int H, const Geometry& g);
void lighthouse_gather_forward(bf16* sub, const bf16* pyr, const int32_t* idx, int B, int H, int Hx, int D,
                               const Geometry& g, cudaStream_t s, const Level0Source& level0 = {});
// inverse: lighthouse_inverse_bytes(B, H, g) of scratch.
void lighthouse_gather_backward(bf16* dpyr, const bf16* dsub, const int32_t* idx, int B, int H, int Hx, int D,
                                const Geometry& g, int32_t* inverse, cudaStream_t s);
// The whole backward from the inner attention's dq, dk, dv [B, H, S, D] to dqkv: one inverse
// index, then every level pulled straight from dq, dk, dv (L = 2..4), or else the gather backward
// of the coarse levels into d*pyr and the pyramid backward pulling level 0. Same bits as
// gather_backward x3 + pyramid_backward.
void lighthouse_gather_pyramid_backward(bf16* dqkv, const bf16* dq, const bf16* dk, const bf16* dv, const int32_t* idx,
                                        bf16* dqpyr, bf16* dkpyr, bf16* dvpyr, int B, int H, int Hkv, int D,
                                        const Geometry& g, int32_t* inverse, cudaStream_t s);
void lighthouse_scatter_forward(bf16* out, const bf16* o, const int32_t* idx, int B, int H, int D, const Geometry& g,
                                int32_t* inverse, cudaStream_t s);
void lighthouse_scatter_backward(bf16* dsub, const bf16* dout, const int32_t* idx, int B, int H, int D,
                                 const Geometry& g, cudaStream_t s);

}  // namespace lh::cuda
