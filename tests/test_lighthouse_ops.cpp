// Each Lighthouse stage against a naive formula written here, and its backward against finite
// differences (inner attention) or the adjoint identity <A x, y> = <x, A^T y> (the linear stages:
// pyramid, gather, scatter; for a linear map this IS the exact finite-difference check).
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "lighthouse/ops/lighthouse_reference.h"
#include "support/finite_diff.h"

namespace lhl = lh::lighthouse;

namespace {
std::vector<double> randn(size_t n, std::mt19937& rng) {
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<double> x(n);
  for (auto& v : x) v = d(rng);
  return x;
}
double inner(const std::vector<double>& a, const std::vector<double>& b) {
  return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
}
// A selection for random scores, so gather/scatter see a realistic index row.
std::vector<int32_t> some_selection(int B, int H, int Hkv, const lhl::Geometry& g, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> sq(size_t(B) * H * g.pyramid_size()), sk(size_t(B) * Hkv * g.pyramid_size());
  for (auto& s : sq) s = u(rng);
  for (auto& s : sk) s = u(rng);
  std::vector<int32_t> idx(size_t(B) * H * g.sub_len());
  lhl::select(idx.data(), sq.data(), sk.data(), B, H, Hkv, g);
  return idx;
}
constexpr double kExact = 1e-12;  // double rounding only
}  // namespace

TEST_CASE("lighthouse pyramid: window means of Q, K, V and the adjoint", "[cpu][lighthouse]") {
  std::mt19937 rng(1);
  const int B = 2, H = 4, Hkv = 2, D = 3;
  const lhl::Geometry g{256, 3, 2, 128};  // geometry of the pyramid only; selection not involved
  const int W = (H + 2 * Hkv) * D;
  const size_t P = g.pyramid_size();
  auto qkv = randn(size_t(B) * g.N * W, rng);
  std::vector<double> qp(B * H * P * D), kp(B * Hkv * P * D), vp(B * Hkv * P * D);
  lhl::pyramid_forward(qp.data(), kp.data(), vp.data(), qkv.data(), B, H, Hkv, D, g);
  // Every entry of every head's pyramid against its window's mean (counted, then checked once).
  size_t wrong = 0, checked = 0;
  auto differs = [&](double got, double want) { return std::abs(got - want) > kExact * (1 + std::abs(want)); };
  for (int b = 0; b < B; ++b)
    for (int l = 0; l < g.L; ++l)
      for (int64_t i = 0; i < g.level_size(l); ++i)
        for (int d = 0; d < D; ++d) {
          const int64_t c = g.window(l);
          auto mean = [&](int column) {
            double s = 0;
            for (int64_t t = c * i; t < c * (i + 1); ++t) s += qkv[(size_t(b) * g.N + t) * W + column];
            return s / double(c);
          };
          const size_t e = g.offset(l) + i;
          for (int h = 0; h < H; ++h) wrong += differs(qp[((b * H + h) * P + e) * D + d], mean(h * D + d));
          for (int h = 0; h < Hkv; ++h) {
            wrong += differs(kp[((b * Hkv + h) * P + e) * D + d], mean((H + h) * D + d));
            wrong += differs(vp[((b * Hkv + h) * P + e) * D + d], mean((H + Hkv + h) * D + d));
          }
          checked += H + 2 * Hkv;
        }
  CHECK(checked == size_t(B) * P * D * (H + 2 * Hkv));
  CHECK(wrong == 0);
  const auto wq = randn(qp.size(), rng), wk = randn(kp.size(), rng), wv = randn(vp.size(), rng);
  std::vector<double> dqkv(qkv.size());
  lhl::pyramid_backward(dqkv.data(), wq.data(), wk.data(), wv.data(), B, H, Hkv, D, g);
  CHECK(inner(qkv, dqkv) == Approx(inner(qp, wq) + inner(kp, wk) + inner(vp, wv)).epsilon(1e-12));
}

TEST_CASE("lighthouse norm scores: level-0 norms, window maxima above", "[cpu][lighthouse]") {
  std::mt19937 rng(2);
  const int B = 1, Hx = 2, D = 21;  // three chunks of the summation order, the last one partial
  const lhl::Geometry g{512, 3, 4, 128};
  const size_t P = g.pyramid_size();
  auto pyr = randn(size_t(B) * Hx * P * D, rng);  // only level 0 is read
  for (double& v : pyr) v = double(float(v));     // the same values as a float pyramid
  std::vector<float> s(B * Hx * P), s_float(B * Hx * P);
  lhl::norm_scores(s.data(), pyr.data(), B, Hx, D, g);
  const std::vector<float> pyr_float(pyr.begin(), pyr.end());
  lhl::norm_scores(s_float.data(), pyr_float.data(), B, Hx, D, g);
  CHECK(s == s_float);  // float and double pyramids of the same values select alike
  for (int x = 0; x < Hx; ++x) {
    for (int t = 0; t < g.N; ++t) {
      long double q = 0;
      for (int d = 0; d < D; ++d) q += (long double)pyr[(x * P + t) * D + d] * pyr[(x * P + t) * D + d];
      // fp32 accumulation of 21 squares: a few ulps at most
      CHECK(s[x * P + t] == Approx(double(std::sqrt(q))).epsilon(1e-6));
    }
    for (int l = 1; l < g.L; ++l)
      for (int64_t i = 0; i < g.level_size(l); ++i) {
        const int64_t c = g.window(l);
        const float* level0 = s.data() + x * P;
        CHECK(s[x * P + g.offset(l) + i] == *std::max_element(level0 + c * i, level0 + c * (i + 1)));
      }
  }
}

TEST_CASE("lighthouse gather: rows of the head's (group's) pyramid, and the adjoint", "[cpu][lighthouse]") {
  std::mt19937 rng(3);
  const int B = 2, H = 4, Hkv = 2, D = 3;
  const lhl::Geometry g{512, 2, 2, 128};
  const size_t P = g.pyramid_size(), S = g.sub_len();
  const auto idx = some_selection(B, H, Hkv, g, rng);
  for (int Hx : {H, Hkv}) {
    const auto pyr = randn(size_t(B) * Hx * P * D, rng);
    std::vector<double> sub(size_t(B) * H * S * D);
    lhl::gather_forward(sub.data(), pyr.data(), idx.data(), B, H, Hx, D, g);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (size_t s = 0; s < S; s += 5)
          for (int d = 0; d < D; ++d)
            CHECK(sub[((b * H + h) * S + s) * D + d] ==
                  pyr[((b * Hx + h / (H / Hx)) * P + idx[(b * H + h) * S + s]) * D + d]);
    const auto w = randn(sub.size(), rng);
    std::vector<double> dpyr(pyr.size(), 123.0);  // must be overwritten, not accumulated into
    lhl::gather_backward(dpyr.data(), w.data(), idx.data(), B, H, Hx, D, g);
    CHECK(inner(pyr, dpyr) == Approx(inner(sub, w)).epsilon(1e-12));
  }
}

TEST_CASE("lighthouse scatter: the pull equals the naive push, and the adjoint", "[cpu][lighthouse]") {
  std::mt19937 rng(4);
  const int B = 2, H = 2, D = 3;
  for (const lhl::Geometry& g : {lhl::Geometry{512, 2, 2, 128}, lhl::Geometry{1024, 3, 2, 128}}) {
    const size_t S = g.sub_len();
    const auto idx = some_selection(B, H, H, g, rng);
    const auto o = randn(size_t(B) * H * S * D, rng);
    std::vector<double> out(size_t(B) * g.N * H * D, 7.0), push(out.size(), 0.0);
    lhl::scatter_forward(out.data(), o.data(), idx.data(), B, H, D, g);
    // Push, as the paper states it: entry (l, i) adds its row to [c*i + c - 1, c*i + 2c - 2].
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (size_t s = 0; s < S; ++s) {
          int l = 0;
          int64_t i = 0;
          g.decode(idx[(b * H + h) * S + s], l, i);
          const int64_t c = g.window(l);
          for (int64_t t = c * i + c - 1; t <= c * i + 2 * c - 2 && t < g.N; ++t)
            for (int d = 0; d < D; ++d) push[((b * g.N + t) * H + h) * D + d] += o[((b * H + h) * S + s) * D + d];
        }
    for (size_t j = 0; j < out.size(); ++j) CHECK(out[j] == Approx(push[j]).margin(kExact));
    const auto w = randn(out.size(), rng);
    std::vector<double> dsub(o.size());
    lhl::scatter_backward(dsub.data(), w.data(), idx.data(), B, H, D, g);
    CHECK(inner(o, dsub) == Approx(inner(out, w)).epsilon(1e-12));
  }
}

TEST_CASE("lighthouse inner attention: naive softmax and finite differences", "[cpu][lighthouse]") {
  std::mt19937 rng(5);
  const int BH = 3, S = 17, D = 4;
  const size_t n = size_t(BH) * S * D;
  auto q = randn(n, rng), k = randn(n, rng), v = randn(n, rng);
  std::vector<double> o(n), lse(size_t(BH) * S);
  lhl::sdpa_forward(o.data(), lse.data(), q.data(), k.data(), v.data(), BH, S, D);
  const double scale = 1.0 / std::sqrt(double(D));
  for (int bh = 0; bh < BH; ++bh)
    for (int t = 0; t < S; ++t) {
      std::vector<double> e(t + 1);
      double z = 0;
      for (int j = 0; j <= t; ++j) {
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += q[(bh * S + t) * D + d] * k[(bh * S + j) * D + d];
        z += e[j] = std::exp(scale * dot);
      }
      CHECK(lse[bh * S + t] == Approx(std::log(z)).epsilon(1e-12));
      for (int d = 0; d < D; ++d) {
        double ref = 0;
        for (int j = 0; j <= t; ++j) ref += e[j] / z * v[(bh * S + j) * D + d];
        CHECK(o[(bh * S + t) * D + d] == Approx(ref).margin(kExact));
      }
    }
  const auto w = randn(n, rng);
  auto loss = [&]() {
    std::vector<double> oo(n), ll(size_t(BH) * S);
    lhl::sdpa_forward(oo.data(), ll.data(), q.data(), k.data(), v.data(), BH, S, D);
    return inner(oo, w);
  };
  std::vector<double> dq(n), dk(n), dv(n);
  lhl::sdpa_backward(dq.data(), dk.data(), dv.data(), w.data(), q.data(), k.data(), v.data(), o.data(), lse.data(),
                     BH, S, D);
  CHECK(lh::testing::max_rel_error(dq, lh::testing::numerical_gradient(q, loss)) < 1e-6);
  CHECK(lh::testing::max_rel_error(dk, lh::testing::numerical_gradient(k, loss)) < 1e-6);
  CHECK(lh::testing::max_rel_error(dv, lh::testing::numerical_gradient(v, loss)) < 1e-6);
}
