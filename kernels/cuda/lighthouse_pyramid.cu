// Lighthouse pyramid (mean pooling of the post-RoPE q, k, v) forward and backward, and the norm
// scores. One thread per 8-element chunk of one output row; every output has a single writer that
// sums its inputs in a fixed order, so results do not depend on the grid (grid-stride loops with
// 64-bit item counts: any N).
#include "lighthouse_geo.cuh"
#include "lighthouse_kernels.h"
#include "vec.cuh"

namespace lh::cuda {
namespace {
using detail::DevGeo;

// The fused row of a token holds H query heads, then Hkv key, then Hkv value heads; column hh of
// that row belongs to one of the three pyramids: the start of that (b, head)'s pyramid.
template <typename Ptr>
__device__ __forceinline__ Ptr part_row(Ptr q, Ptr k, Ptr v, int H, int Hkv, int b, int hh, int64_t P, int D) {
  if (hh < H) return q + (int64_t(b) * H + hh) * P * D;
  if (hh < H + Hkv) return k + (int64_t(b) * Hkv + hh - H) * P * D;
  return v + (int64_t(b) * Hkv + hh - H - Hkv) * P * D;
}

// Entry j of the pyramid of (b, column hh) = mean of the window's base vectors, accumulated in
// fp32 in increasing t and scaled by 1/c (a power of two: exact).
__global__ void pyramid_forward_kernel(bf16* qp, bf16* kp, bf16* vp, const bf16* qkv, int B, int H, int Hkv, int D,
                                       DevGeo g) {
  const int HX = H + 2 * Hkv, V = D / detail::kVec;
  const int64_t P = g.P();
  const size_t items = size_t(B) * HX * P * V;
  for (size_t it = detail::global_thread(); it < items; it += detail::grid_threads()) {
    const int chunk = int(it % V);
    const size_t r = it / V;
    const int64_t j = int64_t(r % P);
    const int row = int(r / P), b = row / HX, hh = row % HX;
    const int l = g.level_of(j);
    const int64_t c = g.win[l], i = j - g.off[l];
    const size_t stride = size_t(HX) * D;
    const bf16* src = qkv + (size_t(b) * g.N + size_t(c * i)) * stride + size_t(hh) * D + chunk * detail::kVec;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, x[8];
    for (int64_t t = 0; t < c; ++t) {
      detail::load8(x, src + size_t(t) * stride);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += x[e];
    }
    const float inv = 1.0f / float(c);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= inv;
    bf16* dst = part_row(qp, kp, vp, H, Hkv, b, hh, P, D);
    detail::store8(dst + j * D + chunk * detail::kVec, acc);
  }
}

// dqkv[b, t, column hh] = sum over levels (ascending) of dpyr(l, t / c) / c.
__global__ void pyramid_backward_kernel(bf16* dqkv, const bf16* dq, const bf16* dk, const bf16* dv, int B, int H,
                                        int Hkv, int D, DevGeo g) {
  const int HX = H + 2 * Hkv, V = D / detail::kVec;
  const int64_t P = g.P();
  const size_t items = size_t(B) * g.N * HX * V;
  for (size_t it = detail::global_thread(); it < items; it += detail::grid_threads()) {
    const int chunk = int(it % V);
    const size_t r = it / V;
    const int hh = int(r % HX);
    const size_t bt = r / HX;
    const int64_t t = int64_t(bt % g.N);
    const int b = int(bt / g.N);
    const bf16* src = part_row(dq, dk, dv, H, Hkv, b, hh, P, D) + chunk * detail::kVec;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, x[8];
    for (int l = 0; l < g.L; ++l) {
      const float inv = 1.0f / float(g.win[l]);
      detail::load8(x, src + (g.off[l] + t / g.win[l]) * D);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += x[e] * inv;
    }
    detail::store8(dqkv + it * detail::kVec, acc);
  }
}

// One thread per base position: the whole row in double, in increasing d, as the CPU reference
// does (the products of bf16 values are exact in double, so contraction into FMA changes nothing
// either). Identical float scores on both backends mean identical selections.
__global__ void level0_norm_kernel(float* score, const bf16* pyr, int rows, int D, DevGeo g) {
  const int64_t P = g.P();
  const size_t items = size_t(rows) * g.N;
  for (size_t it = detail::global_thread(); it < items; it += detail::grid_threads()) {
    const size_t row = it / g.N;
    const int64_t t = int64_t(it % g.N);
    const bf16* x = pyr + (row * P + t) * D;
    double acc = 0.0;
    float v[8];
    for (int d = 0; d < D; d += detail::kVec) {
      detail::load8(v, x + d);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc = __dadd_rn(acc, __dmul_rn(double(v[e]), double(v[e])));
    }
    score[row * P + t] = float(sqrt(acc));
  }
}

// Levels >= 1: the max of the level-0 scores inside the window (max is exact: order-free).
__global__ void window_max_kernel(float* score, int rows, DevGeo g) {
  const int64_t P = g.P(), coarse = P - g.N;
  const size_t items = size_t(rows) * coarse;
  for (size_t it = detail::global_thread(); it < items; it += detail::grid_threads()) {
    const size_t row = it / coarse;
    const int64_t j = g.N + int64_t(it % coarse);
    const int l = g.level_of(j);
    const int64_t c = g.win[l], i = j - g.off[l];
    const float* base = score + row * P + c * i;
    float m = base[0];
    for (int64_t t = 1; t < c; ++t) m = fmaxf(m, base[t]);
    score[row * P + j] = m;
  }
}

constexpr int kThreads = 256;

}  // namespace

void lighthouse_pyramid_forward(bf16* qpyr, bf16* kpyr, bf16* vpyr, const bf16* qkv, int B, int H, int Hkv, int D,
                                const Geometry& geo, cudaStream_t s) {
  detail::check_head_dim(D, "pyramid_forward");
  const DevGeo g = detail::make_dev_geo(geo);
  const size_t items = size_t(B) * (H + 2 * Hkv) * g.P() * (D / detail::kVec);
  pyramid_forward_kernel<<<detail::grid_for(items, kThreads), kThreads, 0, s>>>(qpyr, kpyr, vpyr, qkv, B, H, Hkv, D, g);
  LH_CUDA_CHECK_LAUNCH();
}

void lighthouse_pyramid_backward(bf16* dqkv, const bf16* dqpyr, const bf16* dkpyr, const bf16* dvpyr, int B, int H,
                                 int Hkv, int D, const Geometry& geo, cudaStream_t s) {
  detail::check_head_dim(D, "pyramid_backward");
  const DevGeo g = detail::make_dev_geo(geo);
  const size_t items = size_t(B) * g.N * (H + 2 * Hkv) * (D / detail::kVec);
  pyramid_backward_kernel<<<detail::grid_for(items, kThreads), kThreads, 0, s>>>(dqkv, dqpyr, dkpyr, dvpyr, B, H, Hkv,
                                                                                 D, g);
  LH_CUDA_CHECK_LAUNCH();
}

void lighthouse_norm_scores(float* score, const bf16* pyr, int B, int Hx, int D, const Geometry& geo,
                            cudaStream_t s) {
  detail::check_head_dim(D, "norm_scores");
  const DevGeo g = detail::make_dev_geo(geo);
  const int rows = B * Hx;
  const size_t n0 = size_t(rows) * g.N, n1 = size_t(rows) * (g.P() - g.N);
  level0_norm_kernel<<<detail::grid_for(n0, kThreads), kThreads, 0, s>>>(score, pyr, rows, D, g);
  LH_CUDA_CHECK_LAUNCH();
  window_max_kernel<<<detail::grid_for(n1, kThreads), kThreads, 0, s>>>(score, rows, g);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
