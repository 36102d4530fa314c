// Lighthouse gather (pyramid entries -> dense sub-sequences) and scatter (fan-out with the causal
// shift), forward and backward, all as PULLS: every output chunk of 8 elements has one thread that
// reads its few sources in a fixed order (group heads ascending, levels ascending, positions
// ascending) and accumulates in fp32. No atomics, bit-reproducible for any grid.
//
// The gather backward and the scatter forward need "where in row (b, h) does pyramid entry j sit":
// the inverse index pos [B, H, P] (-1 = not emitted), rebuilt from idx on each call.
#include "lighthouse_geo.cuh"
#include "lighthouse_kernels.h"
#include "vec.cuh"

namespace lh::cuda {
namespace {
using detail::DevGeo;
constexpr int kThreads = 256;

// Entries of one row are distinct (the reference emits each at most once), so every pos element
// has at most one writer.
__global__ void invert_kernel(int32_t* pos, const int32_t* idx, size_t rows, int64_t S, int64_t P) {
  const size_t items = rows * size_t(S);
  for (size_t it = detail::global_thread(); it < items; it += detail::grid_threads()) {
    const size_t row = it / S;
    pos[row * P + idx[it]] = int32_t(it % S);
  }
}

// With z.base set, entries of level 0 (j < N) are read from the fused qkv rows (head column
// z.first_head + x) instead of the pyramid, whose level-0 rows need not exist.
template <typename I>
__global__ void gather_forward_kernel(bf16* sub, const bf16* pyr, const int32_t* idx, int B, int H, int Hx, int D,
                                      int64_t S, int64_t P, Level0Source z) {
  const int V = D / detail::kVec, G = H / Hx;
  const I items = I(B) * I(H) * I(S) * I(V);
  for (I it = I(detail::global_thread()); it < items; it += I(detail::grid_threads())) {
    const int chunk = int(it % I(V));
    const I bhs = it / I(V), bh = bhs / I(S);  // index type I: 64-bit division only where needed
    const int b = int(bh / I(H)), h = int(bh % I(H)), x = h / G;
    const int64_t j = idx[bhs];
    const bf16* src = z.base && j < z.N
                          ? z.base + ((size_t(b) * z.N + j) * z.row_heads + z.first_head + x) * D
                          : pyr + ((size_t(b) * Hx + x) * P + j) * D;
    *reinterpret_cast<uint4*>(sub + size_t(it) * detail::kVec) =
        *reinterpret_cast<const uint4*>(src + chunk * detail::kVec);
  }
}

// dpyr[b, x, j] = sum over the group's heads h (ascending) of dsub[b, h, pos[b, h, j]], for the
// entries j >= first (first = N when the level-0 rows are pulled later by the pyramid backward).
template <typename I>
__global__ void gather_backward_kernel(bf16* dpyr, const bf16* dsub, const int32_t* pos, int B, int H, int Hx, int D,
                                       int64_t S, int64_t P, int64_t first) {
  const int V = D / detail::kVec, G = H / Hx;
  const I span = I(P - first);
  const I items = I(B) * I(Hx) * span * I(V);
  for (I it = I(detail::global_thread()); it < items; it += I(detail::grid_threads())) {
    const int chunk = int(it % I(V));
    const I r = it / I(V);
    const int64_t j = first + int64_t(r % span);
    const I bx = r / span;
    const int b = int(bx / I(Hx)), x = int(bx % I(Hx));
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, v[8];
    for (int h = x * G; h < (x + 1) * G; ++h) {
      const size_t bh = size_t(b) * H + h;
      const int32_t s = pos[bh * P + j];
      if (s < 0) continue;
      detail::load8(v, dsub + (bh * S + s) * D + chunk * detail::kVec);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += v[e];
    }
    detail::store8(dpyr + (bx * P + j) * D + chunk * detail::kVec, acc);
  }
}

// out[b, t, h] = sum over levels (ascending) of o[b, h, pos of entry (l, (t+1)/c - 1)], if emitted.
// Token-major (detail::token_tile): a thread owns chunk `col` of head h for a tile of tokens.
// kL > 0 fixes the depth at compile time (levels unrolled, a token's inverse-index loads all in
// flight at once); kL = 0 takes g.L. Issue-bound like the pyramid backward: 32-bit token and entry
// indices (both < 2^31), one widening multiply per address, the output pointer advancing by a row
// per token, and no work for the (most) entries that were not emitted.
template <int kL>
__global__ __launch_bounds__(detail::kTileThreads) void scatter_forward_kernel(bf16* __restrict__ out,
                                                                             const bf16* __restrict__ o,
                                                                             const int32_t* __restrict__ pos, int H,
                                                                             int D, int64_t S, DevGeo g) {
  const int V = D / detail::kVec;
  const detail::TokenTile tile = detail::token_tile(g.N);
  if (tile.col >= H * V) return;
  const int h = tile.col / V, chunk = tile.col % V;
  const size_t bh = size_t(tile.b) * H + h;
  const int32_t* __restrict__ pos_row = pos + bh * g.P();
  const bf16* __restrict__ o_row = o + bh * S * D + chunk * detail::kVec;
  const size_t row = size_t(H) * D;
  bf16* dst = out + (size_t(tile.b) * g.N + size_t(tile.t0)) * row + size_t(h) * D + chunk * detail::kVec;
  for (int t = int(tile.t0); t < int(tile.t1); ++t, dst += row) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    auto add_source = [&](int32_t at) {  // sub-sequence row `at` of o, if the entry was emitted
      if (at < 0) return;
      float v[8];
      detail::load8_readonly(v, o_row + size_t(unsigned(at)) * unsigned(D));
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += v[e];
    };
    if constexpr (kL > 0) {
      int32_t at[kL];
#pragma unroll
      for (int l = 0; l < kL; ++l) {
        const int i = g.div_win(t + 1, l) - 1;  // < 0: the level's first window has not ended
        at[l] = i >= 0 ? pos_row[unsigned(g.off[l]) + unsigned(i)] : -1;
      }
#pragma unroll
      for (int l = 0; l < kL; ++l) add_source(at[l]);
    } else {
      for (int l = 0; l < g.L; ++l) {
        const int i = g.div_win(t + 1, l) - 1;
        if (i < 0) break;  // coarser windows are longer: none of them has ended either
        add_source(pos_row[unsigned(g.off[l]) + unsigned(i)]);
      }
    }
    detail::store8(dst, acc);
  }
}

// dsub[b, h, s] = sum of dout over entry idx[b, h, s]'s fan-out [c i + c - 1, c i + 2c - 2] (< N).
template <typename I>
__global__ void scatter_backward_kernel(bf16* dsub, const bf16* dout, const int32_t* idx, int B, int H, int D,
                                        int64_t S, DevGeo g) {
  const int V = D / detail::kVec;
  const I items = I(B) * I(H) * I(S) * I(V);
  for (I it = I(detail::global_thread()); it < items; it += I(detail::grid_threads())) {
    const int chunk = int(it % I(V));
    const I bhs = it / I(V), bh = bhs / I(S);
    const int b = int(bh / I(H)), h = int(bh % I(H));
    const int64_t j = idx[bhs];
    const int l = g.level_of(j);
    const int64_t c = g.win[l], i = j - g.off[l];
    const int64_t first = c * i + c - 1, last = min(c * i + 2 * c - 2, g.N - 1);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, v[8];
    for (int64_t t = first; t <= last; ++t) {
      detail::load8(v, dout + ((size_t(b) * g.N + t) * H + h) * D + chunk * detail::kVec);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += v[e];
    }
    detail::store8(dsub + size_t(it) * detail::kVec, acc);
  }
}

void check_groups(int H, int Hx, const char* op) {
  if (Hx < 1 || H % Hx != 0)
    throw std::invalid_argument(std::string("lighthouse cuda ") + op + ": H is not a multiple of the pyramid's heads");
}

void build_inverse(int32_t* pos, const int32_t* idx, int B, int H, const Geometry& geo, cudaStream_t s) {
  const size_t rows = size_t(B) * H;
  const int64_t S = geo.sub_len(), P = geo.pyramid_size();
  LH_CUDA_CHECK(cudaMemsetAsync(pos, 0xFF, rows * P * sizeof(int32_t), s));  // -1 everywhere
  invert_kernel<<<detail::grid_for(rows * S, kThreads), kThreads, 0, s>>>(pos, idx, rows, S, P);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t lighthouse_inverse_bytes(int B, int H, const Geometry& g) {
  return size_t(B) * H * size_t(g.pyramid_size()) * sizeof(int32_t);
}

void lighthouse_gather_forward(bf16* sub, const bf16* pyr, const int32_t* idx, int B, int H, int Hx, int D,
                               const Geometry& g, cudaStream_t s, const Level0Source& level0) {
  detail::check_head_dim(D, "gather_forward");
  check_groups(H, Hx, "gather_forward");
  g.validate();
  const size_t items = size_t(B) * H * g.sub_len() * (D / detail::kVec);
  detail::with_index_type(items, [&](auto index) {
    gather_forward_kernel<decltype(index)><<<detail::grid_for(items, kThreads), kThreads, 0, s>>>(
        sub, pyr, idx, B, H, Hx, D, g.sub_len(), g.pyramid_size(), level0);
  });
  LH_CUDA_CHECK_LAUNCH();
}

namespace {
void gather_backward(bf16* dpyr, const bf16* dsub, const int32_t* pos, int B, int H, int Hx, int D,
                     const Geometry& g, int64_t first, cudaStream_t s) {
  const size_t items = size_t(B) * Hx * (g.pyramid_size() - first) * (D / detail::kVec);
  if (items == 0) return;
  detail::with_index_type(items, [&](auto index) {
    gather_backward_kernel<decltype(index)><<<detail::grid_for(items, kThreads), kThreads, 0, s>>>(
        dpyr, dsub, pos, B, H, Hx, D, g.sub_len(), g.pyramid_size(), first);
  });
  LH_CUDA_CHECK_LAUNCH();
}
}  // namespace

void lighthouse_gather_backward(bf16* dpyr, const bf16* dsub, const int32_t* idx, int B, int H, int Hx, int D,
                                const Geometry& g, int32_t* inverse, cudaStream_t s) {
  detail::check_head_dim(D, "gather_backward");
  check_groups(H, Hx, "gather_backward");
  g.validate();
  build_inverse(inverse, idx, B, H, g, s);
  gather_backward(dpyr, dsub, inverse, B, H, Hx, D, g, 0, s);
}

void lighthouse_gather_pyramid_backward(bf16* dqkv, const bf16* dq, const bf16* dk, const bf16* dv, const int32_t* idx,
                                        bf16* dqpyr, bf16* dkpyr, bf16* dvpyr, int B, int H, int Hkv, int D,
                                        const Geometry& g, int32_t* inverse, cudaStream_t s) {
  detail::check_head_dim(D, "gather_pyramid_backward");
  check_groups(H, Hkv, "gather_pyramid_backward");
  g.validate();
  build_inverse(inverse, idx, B, H, g, s);  // once for all three parts
  const Level0Grads pulled{dq, dk, dv, inverse, g.sub_len()};
  if (lighthouse_pyramid_backward_pulled(dqkv, B, H, Hkv, D, g, pulled, s)) return;
  gather_backward(dqpyr, dq, inverse, B, H, H, D, g, g.N, s);  // coarse levels only
  gather_backward(dkpyr, dk, inverse, B, H, Hkv, D, g, g.N, s);
  gather_backward(dvpyr, dv, inverse, B, H, Hkv, D, g, g.N, s);
  lighthouse_pyramid_backward(dqkv, dqpyr, dkpyr, dvpyr, B, H, Hkv, D, g, s, pulled);
}

void lighthouse_scatter_forward(bf16* out, const bf16* o, const int32_t* idx, int B, int H, int D, const Geometry& geo,
                                int32_t* inverse, cudaStream_t s) {
  detail::check_head_dim(D, "scatter_forward");
  const DevGeo g = detail::make_dev_geo(geo);
  build_inverse(inverse, idx, B, H, geo, s);
  const dim3 grid = detail::token_tile_grid(B, g.N, H * (D / detail::kVec));
  auto launch = [&](auto kernel) { kernel<<<grid, detail::kTileThreads, 0, s>>>(out, o, inverse, H, D, geo.sub_len(), g); };
  if (!detail::with_depth(g.L, [&](auto levels) { launch(scatter_forward_kernel<decltype(levels)::value>); }))
    launch(scatter_forward_kernel<0>);
  LH_CUDA_CHECK_LAUNCH();
}

void lighthouse_scatter_backward(bf16* dsub, const bf16* dout, const int32_t* idx, int B, int H, int D,
                                 const Geometry& geo, cudaStream_t s) {
  detail::check_head_dim(D, "scatter_backward");
  const DevGeo g = detail::make_dev_geo(geo);
  const size_t items = size_t(B) * H * geo.sub_len() * (D / detail::kVec);
  detail::with_index_type(items, [&](auto index) {
    scatter_backward_kernel<decltype(index)><<<detail::grid_for(items, kThreads), kThreads, 0, s>>>(
        dsub, dout, idx, B, H, D, geo.sub_len(), g);
  });
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
