// Our own deterministic flash-attention backward for Hopper (sm_90), head dim 128, causal
// self-attention, GQA: an alternative to cuDNN's deterministic backward, which writes the score
// gradient dS to its workspace and runs a second pass for dQ = dS K (docs/benchmarks.md measures
// that pass at 22% of the attention time at 32K).
//
// One thread block per (batch, kv head, block of 128 keys) keeps dK and dV of its keys in
// registers and walks the query tiles of 64 rows (of every query head of the GQA group) from the
// last down to its diagonal: S^T = K Q^T, P^T, dP^T = V dO^T and dS^T recomputed from the forward's log-sum-exp,
// dV += P^T dO, dK += dS^T Q, and a partial dQ = dS K of the tile, all with wgmma. Warp-specialized
// (flash_backward.cu): one warpgroup loads tiles and adds dQ partials, two compute.
//
// Deterministic: the fp32 dQ partials of a query tile are added (bulk copies into an fp32
// accumulator) in a fixed order, key block 0 first, by waiting on a per-tile counter; a last kernel
// converts the accumulator to bf16. Blocks take their work in groups of (batch, kv head) pairs
// (sized so that their dQ tiles and query rows stay in the L2), longest first within a group (key
// block 0 of every pair of the group first), so a block only ever waits for blocks that started
// before it, which walk the same tiles ahead of it: the waits are short. Scratch is O(N) (the
// fp32 dQ accumulator), where cuDNN's deterministic backward needs O(N^2).
//
// Status (docs/benchmarks.md): correct and bitwise reproducible. On an H200 the backward alone is
// faster than cuDNN's deterministic one up to 8K for one sequence, ~7% slower for 8 x 4K (1.71
// against ~1.6 ms), and 0-6% slower from 16K to 64K; in the 270M training step it is about as
// fast at 32K, ~0.4-1% slower at 64K, ~0.4% faster at 72K, ~1% faster at 80K, 1-3% faster at 98K
// (more with less memory: its O(N) scratch lets recompute auto keep more) and ~3% slower at 8 x
// 4K. Hence the default, training.attention_backward "auto": this kernel for sequences of 81,920
// tokens and longer (kFlashAutoMinLength), cuDNN's for shorter ones.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <initializer_list>

#include "cudnn_sdpa.h"

namespace lh::cuda {

// Whether the kernel takes this shape: head dim 128, self-attention, d contiguous and rows 16-byte
// aligned, on a device of compute capability 9.0 for which this build has sm_90a code.
bool flash_backward_supported(const SdpaShape& shape);

// Whether every pointer is 16-byte aligned (the kernel copies rows in 16-byte pieces).
bool flash_backward_aligned(std::initializer_list<const void*> pointers);

// Scratch bytes for one call: the fp32 dQ accumulator, per-row softmax terms, tile counters.
size_t flash_backward_workspace(const SdpaShape& shape);

// dq, dk, dv (strides of q, k, v; dq those of shape.dq_strides()) from the forward's q, k, v, o,
// its log-sum-exp `stats` (natural log, of the scaled scores) and dout (strides of o).
void flash_backward(const SdpaShape& shape, const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                    const __nv_bfloat16* o, const __nv_bfloat16* dout, const float* stats, __nv_bfloat16* dq,
                    __nv_bfloat16* dk, __nv_bfloat16* dv, float scale, void* workspace, cudaStream_t stream);

}  // namespace lh::cuda
