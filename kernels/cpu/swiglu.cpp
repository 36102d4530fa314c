// SwiGLU gating: out = silu(gate) * up, with gate and up side by side in one [N, 2F] activation.
#include <cmath>
#include <cstddef>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

namespace {
// 1 / (1 + e^-g): for very negative g, e^-g overflows to inf and the result is a clean 0.
template <typename T> T sigmoid(T g) { return T(1) / (T(1) + std::exp(-g)); }
}  // namespace

template <typename T>
void swiglu_forward(T* out, const T* gate_up, int N, int F) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* g = gate_up + static_cast<size_t>(n) * 2 * F;
    const T* u = g + F;
    T* o = out + static_cast<size_t>(n) * F;
    for (int f = 0; f < F; ++f) o[f] = g[f] * sigmoid(g[f]) * u[f];
  }
}

// d silu(g) / dg = s + g s (1 - s) with s = sigmoid(g).
template <typename T>
void swiglu_backward(T* dgate_up, const T* dout, const T* gate_up, int N, int F) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const size_t row = static_cast<size_t>(n) * 2 * F;
    const T* g = gate_up + row;
    const T* u = g + F;
    const T* dy = dout + static_cast<size_t>(n) * F;
    T* dg = dgate_up + row;
    T* du = dg + F;
    for (int f = 0; f < F; ++f) {
      const T s = sigmoid(g[f]);
      const T silu = g[f] * s;
      dg[f] = dy[f] * u[f] * (s + g[f] * s * (T(1) - s));
      du[f] = dy[f] * silu;
    }
  }
}

#define LH_INSTANTIATE(T)                                                  \
  template void swiglu_forward<T>(T*, const T*, int, int);                \
  template void swiglu_backward<T>(T*, const T*, const T*, int, int);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
