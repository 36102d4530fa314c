// Finite-difference gradient checking in double precision.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <vector>

namespace lh::testing {

// Central differences: g_i = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps). The truncation error
// is O(eps^2 L''') and the rounding error O(ulp(L) / eps); eps = 1e-6 balances them near 1e-10
// for losses of order one, far below the 1e-6 tolerances the tests use.
constexpr double kFiniteDiffEps = 1e-6;

// Perturbs x in place (restoring every element) and returns dL/dx.
inline std::vector<double> numerical_gradient(std::vector<double>& x, const std::function<double()>& loss,
                                              double eps = kFiniteDiffEps) {
  std::vector<double> grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + eps;
    const double plus = loss();
    x[i] = saved - eps;
    const double minus = loss();
    x[i] = saved;
    grad[i] = (plus - minus) / (2 * eps);
  }
  return grad;
}

// max_i |a_i - b_i| / max_i |b_i|: relative to the gradient's scale, so that elements that are
// nearly zero do not turn rounding noise into huge per-element ratios. A zero reference vector
// falls back to the absolute error.
inline double max_rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  if (a.size() != b.size()) return INFINITY;
  return scale > 0.0 ? diff / scale : diff;
}

}  // namespace lh::testing
