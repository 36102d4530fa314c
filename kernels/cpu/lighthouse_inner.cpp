// Lighthouse inner attention: plain causal softmax attention over the gathered sub-sequences,
// [BH, S, D] with q, k, v separate (after the gather there is no fused layout and no GQA left).
// Same math as attention.cpp (scale 1/sqrt(D), log-sum-exp saved, probabilities recomputed in
// backward), kept separate so that file's fused-qkv API stays as it is.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lh::lighthouse {
namespace {
template <typename T> T dot(const T* a, const T* b, int D) {
  T s = 0;
  for (int d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}
}  // namespace

template <typename T> void sdpa_forward(T* o, T* lse, const T* q, const T* k, const T* v, int BH, int S, int D) {
  const T scale = T(1) / std::sqrt(T(D));
#pragma omp parallel
  {
    std::vector<T> score(S);
#pragma omp for schedule(static)
    for (int bh = 0; bh < BH; ++bh) {
      const size_t base = size_t(bh) * S * D;
      for (int t = 0; t < S; ++t) {
        const T* qt = q + base + size_t(t) * D;
        T m = -INFINITY;
        for (int j = 0; j <= t; ++j) {
          score[j] = scale * dot(qt, k + base + size_t(j) * D, D);
          m = std::max(m, score[j]);
        }
        T* ot = o + base + size_t(t) * D;
        std::fill_n(ot, D, T(0));
        T sum = 0;
        for (int j = 0; j <= t; ++j) {
          const T w = std::exp(score[j] - m);
          sum += w;
          const T* vj = v + base + size_t(j) * D;
          for (int d = 0; d < D; ++d) ot[d] += w * vj[d];
        }
        for (int d = 0; d < D; ++d) ot[d] /= sum;
        lse[size_t(bh) * S + t] = m + std::log(sum);
      }
    }
  }
}

// With P = exp(scale q k^T - lse) (causal): dV = P^T dO; dS = P * (dO V^T - rowsum(dO * O));
// dQ = scale dS K; dK = scale dS^T Q. One task per row bh; sums run over t, then j, ascending.
template <typename T>
void sdpa_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* o,
                   const T* lse, int BH, int S, int D) {
  const T scale = T(1) / std::sqrt(T(D));
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < BH; ++bh) {
    const size_t base = size_t(bh) * S * D;
    std::fill_n(dk + base, size_t(S) * D, T(0));
    std::fill_n(dv + base, size_t(S) * D, T(0));
    for (int t = 0; t < S; ++t) {
      const T* qt = q + base + size_t(t) * D;
      const T* dot_t = dout + base + size_t(t) * D;
      const T row_lse = lse[size_t(bh) * S + t];
      const T delta = dot(dot_t, o + base + size_t(t) * D, D);
      T* dqt = dq + base + size_t(t) * D;
      std::fill_n(dqt, D, T(0));
      for (int j = 0; j <= t; ++j) {
        const T* kj = k + base + size_t(j) * D;
        const T* vj = v + base + size_t(j) * D;
        const T w = std::exp(scale * dot(qt, kj, D) - row_lse);
        const T ds = w * (dot(dot_t, vj, D) - delta);
        T* dkj = dk + base + size_t(j) * D;
        T* dvj = dv + base + size_t(j) * D;
        for (int d = 0; d < D; ++d) {
          dqt[d] += ds * kj[d];
          dkj[d] += scale * ds * qt[d];
          dvj[d] += w * dot_t[d];
        }
      }
      for (int d = 0; d < D; ++d) dqt[d] *= scale;
    }
  }
}

#define LH_INSTANTIATE(T)                                                                  \
  template void sdpa_forward<T>(T*, T*, const T*, const T*, const T*, int, int, int);       \
  template void sdpa_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, const T*, int, \
                                 int, int);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::lighthouse
