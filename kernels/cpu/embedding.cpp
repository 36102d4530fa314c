// Token embedding lookup and its scatter-add backward.
#include <algorithm>
#include <cstddef>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

namespace {
// Backward splits the columns of dwte into strips; one thread owns a strip for all tokens, so
// repeated tokens are summed in token order without atomics. A strip of this many values is a
// few cache lines, wide enough to amortise the per-token index load.
constexpr int kColumnStrip = 64;
}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* src = wte + static_cast<size_t>(tokens[n]) * C;
    std::copy(src, src + C, out + static_cast<size_t>(n) * C);
  }
}

template <typename T>
void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int N, int C) {
  const int strips = (C + kColumnStrip - 1) / kColumnStrip;
#pragma omp parallel for schedule(static)
  for (int s = 0; s < strips; ++s) {
    const int c0 = s * kColumnStrip;
    const int c1 = std::min(C, c0 + kColumnStrip);
    for (int n = 0; n < N; ++n) {
      T* dst = dwte + static_cast<size_t>(tokens[n]) * C;
      const T* src = dout + static_cast<size_t>(n) * C;
      for (int c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

#define LH_INSTANTIATE(T)                                                                   \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int, int);              \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int, int);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
