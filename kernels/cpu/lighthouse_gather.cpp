// Lighthouse gather: copies the selected pyramid entries into dense per-head sub-sequences, and
// its adjoint. With GQA, head h reads the pyramid of its group h / (H / Hx).
#include <algorithm>
#include <cstddef>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lh::lighthouse {

template <typename T>
void gather_forward(T* sub, const T* pyr, const int32_t* idx, int B, int H, int Hx, int D, const Geometry& g) {
  const int64_t P = g.pyramid_size(), S = g.sub_len();
  const int group = H / Hx;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const T* src = pyr + (size_t(b) * Hx + h / group) * P * D;
      const int32_t* row = idx + (size_t(b) * H + h) * S;
      T* dst = sub + (size_t(b) * H + h) * S * D;
      for (int64_t s = 0; s < S; ++s) std::copy_n(src + int64_t(row[s]) * D, D, dst + s * D);
    }
}

// One task per (b, group) owns that group's pyramid gradient: no two tasks write the same row.
template <typename T>
void gather_backward(T* dpyr, const T* dsub, const int32_t* idx, int B, int H, int Hx, int D, const Geometry& g) {
  const int64_t P = g.pyramid_size(), S = g.sub_len();
  const int group = H / Hx;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int x = 0; x < Hx; ++x) {
      T* dst = dpyr + (size_t(b) * Hx + x) * P * D;
      std::fill_n(dst, P * D, T(0));
      for (int h = x * group; h < (x + 1) * group; ++h) {
        const int32_t* row = idx + (size_t(b) * H + h) * S;
        const T* src = dsub + (size_t(b) * H + h) * S * D;
        for (int64_t s = 0; s < S; ++s) {
          T* e = dst + int64_t(row[s]) * D;
          for (int d = 0; d < D; ++d) e[d] += src[s * D + d];
        }
      }
    }
}

#define LH_INSTANTIATE(T)                                                                          \
  template void gather_forward<T>(T*, const T*, const int32_t*, int, int, int, int, const Geometry&); \
  template void gather_backward<T>(T*, const T*, const int32_t*, int, int, int, int, const Geometry&);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::lighthouse
