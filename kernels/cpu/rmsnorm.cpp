// RMSNorm without bias or mean subtraction (Llama style).
// Row reductions are accumulated in double: this is the oracle, and the sums over C are where
// float error would otherwise concentrate.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

namespace {
// dweight is reduced over rows; each thread owns a strip of columns (see embedding.cpp).
constexpr int kColumnStrip = 64;
}  // namespace

template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* weight, int N, int C, double eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* xr = x + static_cast<size_t>(n) * C;
    T* orow = out + static_cast<size_t>(n) * C;
    double ss = 0.0;
    for (int c = 0; c < C; ++c) ss += static_cast<double>(xr[c]) * xr[c];
    const T r = static_cast<T>(1.0 / std::sqrt(ss / C + eps));
    rstd[n] = r;
    for (int c = 0; c < C; ++c) orow[c] = xr[c] * r * weight[c];
  }
}

// With y = x * r * w and r = (mean(x^2) + eps)^(-1/2):
//   dx_c = r * w_c * dy_c - x_c * r^3 / C * sum_j(dy_j * w_j * x_j)
//   dw_c = sum_n dy_nc * x_nc * r_n
template <typename T>
void rmsnorm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight, const T* rstd,
                      int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const size_t row = static_cast<size_t>(n) * C;
    const T* xr = x + row;
    const T* dy = dout + row;
    double dot = 0.0;
    for (int c = 0; c < C; ++c) dot += static_cast<double>(dy[c]) * weight[c] * xr[c];
    const double r = rstd[n];
    const T k = static_cast<T>(r * r * r * dot / C);
    const T rt = rstd[n];
    for (int c = 0; c < C; ++c) dx[row + c] += rt * weight[c] * dy[c] - xr[c] * k;
  }

  const int strips = (C + kColumnStrip - 1) / kColumnStrip;
#pragma omp parallel for schedule(static)
  for (int s = 0; s < strips; ++s) {
    const int c0 = s * kColumnStrip;
    const int c1 = std::min(C, c0 + kColumnStrip);
    double acc[kColumnStrip] = {};
    for (int n = 0; n < N; ++n) {
      const size_t row = static_cast<size_t>(n) * C;
      const double r = rstd[n];
      for (int c = c0; c < c1; ++c) acc[c - c0] += static_cast<double>(dout[row + c]) * x[row + c] * r;
    }
    for (int c = c0; c < c1; ++c) dweight[c] += static_cast<T>(acc[c - c0]);
  }
}

#define LH_INSTANTIATE(T)                                                                   \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int, int, double);          \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int, int);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
