// The fp32/fp64 CPU reference of Lighthouse attention (docs/lighthouse.md), stage by stage. It is
// the oracle of the CUDA kernels, so every stage is a separate, plainly written function with a
// documented layout, and the whole layer (layer_forward/backward) is nothing but their composition.
// Conventions are those of cpu_reference.h: row-major, deterministic for any thread count
// (each output element is produced by one thread in a fixed order), activation gradients written.
//
// Layouts (D = head dim; Hx = H for queries, Hkv for keys and values):
//   qkv   [B, N, (H + 2*Hkv) * D]  the model's fused, RoPE-rotated activation (as attention.cpp)
//   pyr   [B, Hx, P, D]            pyramid of one of Q, K, V; entry off(l)+i = level l, index i
//   score [B, Hx, P] float         norm scores of the same entries
//   idx   [B, H, S] int32          pyramid indices of the sub-sequence, in causal order
//   sub   [B, H, S, D]             gathered q, k or v sub-sequence; o, do likewise; lse [B, H, S]
//   out   [B, N, H * D]            the model's attention output layout
//
// GQA (H = G * Hkv): selection runs per QUERY head h, from h's own query scores and the key
// scores of its KV group g = h / G; the gathered K and V rows come from group g's pyramids. The
// inner attention is then plain multi-head attention over H independent sub-sequences, and the
// gather backward sums the G heads of a group into that group's K/V pyramid gradient (in
// increasing h). Every query head thus picks what IT needs; the price is G sub-sequences of K/V.
#pragma once
#include <cstdint>
#include <vector>

#include "lighthouse/ops/lighthouse_geometry.h"

namespace lh::lighthouse {

// ---- pyramid (kernels/cpu/lighthouse_pyramid.cpp) ------------------------------------------------
// Splits the fused qkv into head-major pyramids: level 0 = the vectors themselves, level l >= 1 =
// the plain mean over the entry's window of p^l base positions.
template <typename T>
void pyramid_forward(T* qpyr, T* kpyr, T* vpyr, const T* qkv, int B, int H, int Hkv, int D, const Geometry& g);
// The adjoint: each base position receives its level-0 gradient plus dpyr(l, t / p^l) / p^l from
// every coarser level (a pull: one writer per element). dqkv written, all three parts.
template <typename T>
void pyramid_backward(T* dqkv, const T* dqpyr, const T* dkpyr, const T* dvpyr, int B, int H, int Hkv, int D,
                      const Geometry& g);

// ---- norm scores (kernels/cpu/lighthouse_scores.cpp) ---------------------------------------------
// score(0, t) = ||pyr(0, t)||_2, stored as float; score(l, i) for l >= 1 = max of the level-0
// scores inside the window. No gradient. The squares of the row (rounded to float) are summed in
// fp32 in a fixed order that parallel hardware can follow: kNormChunk elements at a time by fused
// multiply-adds, then the chunk sums pairwise (neighbours, pairs of pairs, ...; their count padded
// with zeros to a power of two); the root is correctly rounded.
constexpr int kNormChunk = 8;  // one 16-byte vector of bf16
template <typename T> void norm_scores(float* score, const T* pyr, int B, int Hx, int D, const Geometry& g);
// Fills levels >= 1 of `rows` score rows [rows, P] from their level 0 (window maxima), in place:
// for scores that come from elsewhere (the `lighthouse select` command).
void pool_scores(float* score, int rows, const Geometry& g);

// ---- selection (kernels/cpu/lighthouse_select.cpp) -----------------------------------------------
// The per-tile top-k cascade, coarse to fine, with the kQuerySlots / kQuerySlots split (query score
// first, then key score among the rest); ties: higher score first, then lower pyramid index. All
// candidates are emitted and sorted tile by tile by Geometry::sort_key. sq [B, H, P], sk [B, Hkv, P],
// idx [B, H, S]. Throws std::invalid_argument on a NaN score (the ordering would be undefined).
void select(int32_t* idx, const float* sq, const float* sk, int B, int H, int Hkv, const Geometry& g);

// One emitted entry of an index row, decoded (tests, the CLI's drawing).
struct Entry {
  int level;
  int64_t i;      // index within its level
  bool selected;  // level >= 1 and its children were emitted
  double key;     // Geometry::sort_key
};
// Decodes one (b, h) row idx[0..S): an entry of level >= 1 is selected iff its first child appears.
std::vector<Entry> describe_row(const int32_t* idx_row, const Geometry& g);

// ---- gather (kernels/cpu/lighthouse_gather.cpp) --------------------------------------------------
// sub[b, h, s, :] = pyr[b, h / (H / Hx), idx[b, h, s], :]
template <typename T>
void gather_forward(T* sub, const T* pyr, const int32_t* idx, int B, int H, int Hx, int D, const Geometry& g);
// dpyr[b, x, j, :] = sum over the heads h of group x and the s with idx[b, h, s] == j of
// dsub[b, h, s, :] (written; zero for entries nobody gathered). An entry appears at most once per
// (b, h), so the only sum is over a group's heads, done in increasing h.
template <typename T>
void gather_backward(T* dpyr, const T* dsub, const int32_t* idx, int B, int H, int Hx, int D, const Geometry& g);

// ---- inner attention (kernels/cpu/lighthouse_inner.cpp) ------------------------------------------
// Causal softmax attention on BH independent rows of S entries, q/k/v/o [BH, S, D] contiguous,
// scale 1/sqrt(D), lse [BH, S] (natural log) saved for backward.
template <typename T> void sdpa_forward(T* o, T* lse, const T* q, const T* k, const T* v, int BH, int S, int D);
// dq, dk, dv written; probabilities recomputed from lse.
template <typename T>
void sdpa_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* o,
                   const T* lse, int BH, int S, int D);

// ---- scatter (kernels/cpu/lighthouse_scatter.cpp) ------------------------------------------------
// Fan-out with the causal shift, as a pull: base position t of head h sums, for l = 0..L-1 in that
// order, the output row of entry (l, (t+1)/p^l - 1) when that entry was emitted (an entry (l, i)
// reaches exactly [c*i + c - 1, c*i + 2c - 2], c = p^l). Uncovered positions get 0. o [B, H, S, D]
// -> out [B, N, H * D], written.
template <typename T> void scatter_forward(T* out, const T* o, const int32_t* idx, int B, int H, int D, const Geometry& g);
// dsub[b, h, s, :] = sum of dout over the fan-out positions of entry idx[b, h, s] (those < N), written.
template <typename T>
void scatter_backward(T* dsub, const T* dout, const int32_t* idx, int B, int H, int D, const Geometry& g);

// ---- the whole layer (kernels/cpu/lighthouse_layer.cpp) ------------------------------------------
// What forward keeps for backward (the indices are constants of the backward pass).
template <typename T> struct LayerState {
  std::vector<T> qpyr, kpyr, vpyr;  // [B, H, P, D], [B, Hkv, P, D] x 2
  std::vector<float> sq, sk;        // [B, H, P], [B, Hkv, P]
  std::vector<int32_t> idx;         // [B, H, S]
  std::vector<T> q, k, v, o, lse;   // gathered sub-sequences and the inner output [B, H, S, D]; lse [B, H, S]
};
// out [B, N, H * D] = scatter(sdpa(gather(pyramid(qkv), select(scores(pyramid(qkv)))))).
template <typename T>
void layer_forward(T* out, LayerState<T>& st, const T* qkv, int B, int H, int Hkv, int D, const Geometry& g);
// dqkv [B, N, (H + 2*Hkv) * D] written.
template <typename T>
void layer_backward(T* dqkv, const T* dout, const LayerState<T>& st, int B, int H, int Hkv, int D,
                    const Geometry& g);

}  // namespace lh::lighthouse
