// Optimizer helpers: gradient-norm reduction, clipping scale, AdamW step.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

namespace {
// sum_squares cuts the array into chunks of this fixed size; chunk partials are summed in chunk
// order, so the result depends on n only, never on the thread count.
constexpr size_t kChunk = 4096;
}  // namespace

template <typename T>
double sum_squares(const T* x, size_t n) {
  const long long chunks = static_cast<long long>((n + kChunk - 1) / kChunk);
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static)
  for (long long c = 0; c < chunks; ++c) {
    const size_t begin = static_cast<size_t>(c) * kChunk, end = std::min(n, begin + kChunk);
    double s = 0.0;
    for (size_t i = begin; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    partial[static_cast<size_t>(c)] = s;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

template <typename T>
void scale_inplace(T* x, size_t n, double s) {
  const long long count = static_cast<long long>(n);
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < count; ++i) x[i] = static_cast<T>(x[i] * s);
}

// The update is evaluated in double and rounded once to T per stored value. The scaled gradient is
// rounded to T first, exactly as scale_inplace would have stored it.
template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, size_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, int step, double grad_scale) {
  const double bias1 = 1.0 - std::pow(beta1, step);
  const double bias2 = 1.0 - std::pow(beta2, step);
  const long long count = static_cast<long long>(n);
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < count; ++i) {
    const double g = static_cast<T>(grad[i] * grad_scale);
    const double mi = beta1 * m[i] + (1.0 - beta1) * g;
    const double vi = beta2 * v[i] + (1.0 - beta2) * g * g;
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    const double p = param[i];
    param[i] = static_cast<T>(p - lr * ((mi / bias1) / (std::sqrt(vi / bias2) + eps) + weight_decay * p));
  }
}

#define LH_INSTANTIATE(T)                                                                           \
  template double sum_squares<T>(const T*, size_t);                                                 \
  template void scale_inplace<T>(T*, size_t, double);                                               \
  template void adamw_update<T>(T*, const T*, T*, T*, size_t, double, double, double, double, double, int, double);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
