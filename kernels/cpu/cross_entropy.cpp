// Softmax cross-entropy over a vocabulary of V logits per row.
// Stable form: subtract the row maximum before exponentiating; sums of exponentials in double.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

namespace {
struct RowStats {
  double max;
  double sum_exp;  // sum_v exp(logit_v - max)
};

template <typename T> RowStats row_stats(const T* row, int V) {
  double m = row[0];
  for (int v = 1; v < V; ++v) m = std::max(m, static_cast<double>(row[v]));
  double s = 0.0;
  for (int v = 0; v < V; ++v) s += std::exp(static_cast<double>(row[v]) - m);
  return {m, s};
}
}  // namespace

template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int N, int V, int ld) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const T* row = logits + static_cast<size_t>(n) * ld;
    const RowStats st = row_stats(row, V);
    const double row_lse = st.max + std::log(st.sum_exp);
    lse[n] = static_cast<T>(row_lse);
    losses[n] = static_cast<T>(row_lse - static_cast<double>(row[targets[n]]));
  }
}

// Reads every logit before writing the same index, so dlogits may alias logits.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets, int N, int V, int ld,
                            double dloss) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const size_t off = static_cast<size_t>(n) * ld;
    const double row_lse = static_cast<double>(lse[n]);
    for (int v = 0; v < V; ++v) {
      const double p = std::exp(static_cast<double>(logits[off + v]) - row_lse);
      dlogits[off + v] = static_cast<T>((p - (v == targets[n] ? 1.0 : 0.0)) * dloss);
    }
    std::fill(dlogits + off + V, dlogits + off + ld, T(0));
  }
}

#define LH_INSTANTIATE(T)                                                                    \
  template void cross_entropy_forward<T>(T*, T*, const T*, const int32_t*, int, int, int);  \
  template void cross_entropy_backward<T>(T*, const T*, const T*, const int32_t*, int, int, int, double);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
