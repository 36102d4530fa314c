// Elementwise residual add and gradient accumulation.
#include <cstddef>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

// Each element is read and written at the same index, so out may alias a or b.
template <typename T>
void residual_forward(T* out, const T* a, const T* b, size_t n) {
  const long long count = static_cast<long long>(n);
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < count; ++i) out[i] = a[i] + b[i];
}

template <typename T>
void accumulate(T* dst, const T* src, size_t n) {
  const long long count = static_cast<long long>(n);
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < count; ++i) dst[i] += src[i];
}

#define LH_INSTANTIATE(T)                                                 \
  template void residual_forward<T>(T*, const T*, const T*, size_t);     \
  template void accumulate<T>(T*, const T*, size_t);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
