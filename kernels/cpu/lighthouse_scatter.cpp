// Lighthouse scatter: each emitted entry's inner output fans out to the p^l base positions starting
// at its window's last token (the causal shift). Written as a PULL, so no two threads ever add to
// the same element and the sum order is fixed (levels ascending): deterministic without atomics.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lh::lighthouse {
namespace {
// position_of[j] = the sub-sequence position of pyramid entry j in this (b, h) row, or -1.
std::vector<int32_t> invert_row(const int32_t* row, const Geometry& g) {
  std::vector<int32_t> position_of(g.pyramid_size(), -1);
  for (int64_t s = 0; s < g.sub_len(); ++s) position_of[row[s]] = int32_t(s);
  return position_of;
}
}  // namespace

// Entry (l, i) with c = p^l reaches t iff c*(i+1) <= t+1 <= c*(i+2) - 1, i.e. i = (t+1)/c - 1:
// at most one entry per level reaches a position.
template <typename T>
void scatter_forward(T* out, const T* o, const int32_t* idx, int B, int H, int D, const Geometry& g) {
  const int64_t S = g.sub_len();
  const size_t ts = size_t(H) * D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const std::vector<int32_t> position_of = invert_row(idx + (size_t(b) * H + h) * S, g);
      const T* src = o + (size_t(b) * H + h) * S * D;
      for (int64_t t = 0; t < g.N; ++t) {
        T* row = out + (size_t(b) * g.N + t) * ts + size_t(h) * D;
        std::fill_n(row, D, T(0));
        for (int l = 0; l < g.L; ++l) {
          const int64_t i = (t + 1) / g.window(l) - 1;
          if (i < 0) continue;  // no window of this level has ended yet
          const int32_t s = position_of[g.offset(l) + i];
          if (s < 0) continue;  // that entry was not emitted
          for (int d = 0; d < D; ++d) row[d] += src[int64_t(s) * D + d];
        }
      }
    }
}

template <typename T>
void scatter_backward(T* dsub, const T* dout, const int32_t* idx, int B, int H, int D, const Geometry& g) {
  const int64_t S = g.sub_len();
  const size_t ts = size_t(H) * D;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const int32_t* row = idx + (size_t(b) * H + h) * S;
      T* dst = dsub + (size_t(b) * H + h) * S * D;
      for (int64_t s = 0; s < S; ++s) {
        int level = 0;
        int64_t i = 0;
        g.decode(row[s], level, i);
        const int64_t c = g.window(level);
        T* e = dst + s * D;
        std::fill_n(e, D, T(0));
        const int64_t last = std::min<int64_t>(c * i + 2 * c - 2, g.N - 1);  // positions >= N were dropped
        for (int64_t t = c * i + c - 1; t <= last; ++t) {
          const T* grow = dout + (size_t(b) * g.N + t) * ts + size_t(h) * D;
          for (int d = 0; d < D; ++d) e[d] += grow[d];
        }
      }
    }
}

#define LH_INSTANTIATE(T)                                                                       \
  template void scatter_forward<T>(T*, const T*, const int32_t*, int, int, int, const Geometry&); \
  template void scatter_backward<T>(T*, const T*, const int32_t*, int, int, int, const Geometry&);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::lighthouse
