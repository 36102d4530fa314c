// Lighthouse pyramid: mean pooling of the post-RoPE Q, K and V per level, forward and backward.
// Level l >= 1 is pooled straight from the base positions (not from level l-1) so that each entry
// is literally "the mean over its window"; p^l is a power of two, so dividing by it is exact.
#include <algorithm>
#include <cstddef>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lh::lighthouse {
namespace {

// The fused qkv row of a token holds H query heads, then Hkv key heads, then Hkv value heads; a
// "part" is one of the three, starting at head column `first_head`.
struct Part {
  int first_head;  // 0, H or H + Hkv
  int heads;       // H or Hkv
};

template <typename T>
void pool_part(T* pyr, const T* qkv, int B, const Part& part, int D, size_t token_stride, const Geometry& g) {
  const int64_t P = g.pyramid_size();
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int x = 0; x < part.heads; ++x) {
      const T* src = qkv + size_t(b) * g.N * token_stride + size_t(part.first_head + x) * D;
      T* dst = pyr + (size_t(b) * part.heads + x) * P * D;
      for (int l = 0; l < g.L; ++l) {
        const int64_t c = g.window(l);
        const T inv_c = T(1) / T(c);
        for (int64_t i = 0; i < g.level_size(l); ++i) {
          T* e = dst + (g.offset(l) + i) * D;
          std::fill_n(e, D, T(0));
          for (int64_t t = c * i; t < c * (i + 1); ++t)
            for (int d = 0; d < D; ++d) e[d] += src[t * token_stride + d];
          for (int d = 0; d < D; ++d) e[d] *= inv_c;
        }
      }
    }
}

template <typename T>
void unpool_part(T* dqkv, const T* dpyr, int B, const Part& part, int D, size_t token_stride, const Geometry& g) {
  const int64_t P = g.pyramid_size();
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int x = 0; x < part.heads; ++x) {
      T* dst = dqkv + size_t(b) * g.N * token_stride + size_t(part.first_head + x) * D;
      const T* src = dpyr + (size_t(b) * part.heads + x) * P * D;
      for (int64_t t = 0; t < g.N; ++t) {
        T* row = dst + t * token_stride;
        std::fill_n(row, D, T(0));
        // Levels in increasing order: a fixed summation order per element.
        for (int l = 0; l < g.L; ++l) {
          const int64_t c = g.window(l);
          const T inv_c = T(1) / T(c);
          const T* e = src + (g.offset(l) + t / c) * D;
          for (int d = 0; d < D; ++d) row[d] += e[d] * inv_c;
        }
      }
    }
}

}  // namespace

template <typename T>
void pyramid_forward(T* qpyr, T* kpyr, T* vpyr, const T* qkv, int B, int H, int Hkv, int D, const Geometry& g) {
  const size_t ts = size_t(H + 2 * Hkv) * D;
  pool_part(qpyr, qkv, B, Part{0, H}, D, ts, g);
  pool_part(kpyr, qkv, B, Part{H, Hkv}, D, ts, g);
  pool_part(vpyr, qkv, B, Part{H + Hkv, Hkv}, D, ts, g);
}

template <typename T>
void pyramid_backward(T* dqkv, const T* dqpyr, const T* dkpyr, const T* dvpyr, int B, int H, int Hkv, int D,
                      const Geometry& g) {
  const size_t ts = size_t(H + 2 * Hkv) * D;
  unpool_part(dqkv, dqpyr, B, Part{0, H}, D, ts, g);
  unpool_part(dqkv, dkpyr, B, Part{H, Hkv}, D, ts, g);
  unpool_part(dqkv, dvpyr, B, Part{H + Hkv, Hkv}, D, ts, g);
}

#define LH_INSTANTIATE(T)                                                                                 \
  template void pyramid_forward<T>(T*, T*, T*, const T*, int, int, int, int, const Geometry&);             \
  template void pyramid_backward<T>(T*, const T*, const T*, const T*, int, int, int, int, const Geometry&);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::lighthouse
