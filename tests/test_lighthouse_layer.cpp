// The whole Lighthouse layer: causality, gradients against finite differences (GQA included), and
// float/double agreement.
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "lighthouse/ops/lighthouse_reference.h"
#include "support/finite_diff.h"

namespace lhl = lh::lighthouse;

namespace {
struct Shape {
  lhl::Geometry g;
  int B, H, Hkv, D;
  int width() const { return (H + 2 * Hkv) * D; }
  size_t qkv_size() const { return size_t(B) * g.N * width(); }
  size_t out_size() const { return size_t(B) * g.N * H * D; }
};

template <typename T> std::vector<T> randn(size_t n, std::mt19937& rng) {
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<T> x(n);
  for (auto& v : x) v = T(d(rng));
  return x;
}

template <typename T> std::vector<T> forward(const Shape& s, const std::vector<T>& qkv, lhl::LayerState<T>* keep = nullptr) {
  lhl::LayerState<T> st;
  std::vector<T> out(s.out_size());
  lhl::layer_forward(out.data(), keep ? *keep : st, qkv.data(), s.B, s.H, s.Hkv, s.D, s.g);
  return out;
}

// Rotates the (d0, d1) pair of one head vector by a fixed angle: its norm (hence every score and
// the selection) stays the same up to rounding, while its direction, and so the output, changes.
template <typename T> void rotate(std::vector<T>& x, size_t at) {
  const double a = 0.7, u = x[at], v = x[at + 1];
  x[at] = T(std::cos(a) * u - std::sin(a) * v);
  x[at + 1] = T(std::sin(a) * u + std::cos(a) * v);
}
}  // namespace

TEST_CASE("lighthouse layer is causal given the selection", "[cpu][lighthouse]") {
  std::mt19937 rng(11);
  const Shape shapes[] = {{{256, 2, 2, 128}, 1, 2, 2, 4}, {{1024, 3, 2, 128}, 1, 2, 1, 4},
                          {{512, 2, 4, 128}, 2, 4, 2, 4}};
  for (const Shape& s : shapes) {
    INFO("N=" << s.g.N << " L=" << s.g.L << " p=" << s.g.p << " H=" << s.H << " Hkv=" << s.Hkv);
    const auto qkv = randn<double>(s.qkv_size(), rng);
    lhl::LayerState<double> base_state;
    const auto base = forward(s, qkv, &base_state);
    for (int t : {0, 1, 37, s.g.N / 2 - 1, s.g.N / 2, s.g.N - 5}) {
      for (int part = 0; part < 3; ++part) {  // 0: a query head, 1: a key head, 2: a value head
        const int head = part == 0 ? s.H - 1 : part == 1 ? s.H : s.H + s.Hkv;
        auto x = qkv;
        const size_t at = (size_t(s.B - 1) * s.g.N + t) * s.width() + size_t(head) * s.D;
        if (part == 2) {
          x[at] += 1.5;  // values never reach the scores: any change is fair
        } else {
          rotate(x, at);
        }
        lhl::LayerState<double> st;
        const auto out = forward(s, x, &st);
        REQUIRE(st.idx == base_state.idx);  // the rotation kept the selection
        const size_t row = size_t(s.H) * s.D, first = size_t(s.B - 1) * s.g.N * row;
        bool before_same = true, after_changed = false;
        for (size_t j = 0; j < out.size(); ++j) {
          const bool before = j >= first && (j - first) / row < size_t(t);
          if (before && out[j] != base[j]) before_same = false;
          if (!before && out[j] != base[j]) after_changed = true;
        }
        INFO("perturbed position " << t << " part " << part);
        CHECK(before_same);    // bitwise: no earlier output moved
        CHECK(after_changed);  // and the perturbation did reach the output
      }
    }
  }
}

TEST_CASE("lighthouse layer gradients match finite differences (double, GQA)", "[cpu][lighthouse]") {
  std::mt19937 rng(12);
  const Shape shapes[] = {{{256, 2, 2, 128}, 2, 4, 2, 4}, {{512, 2, 2, 128}, 1, 2, 2, 2},  // B = 2: per-sequence offsets
                          {{1024, 3, 2, 128}, 1, 2, 1, 2}};
  for (const Shape& s : shapes) {
    INFO("N=" << s.g.N << " L=" << s.g.L << " H=" << s.H << " Hkv=" << s.Hkv);
    auto qkv = randn<double>(s.qkv_size(), rng);
    const auto w = randn<double>(s.out_size(), rng);
    lhl::LayerState<double> st;
    const auto out = forward(s, qkv, &st);
    std::vector<double> dqkv(qkv.size());
    lhl::layer_backward(dqkv.data(), w.data(), st, s.B, s.H, s.Hkv, s.D, s.g);

    // A spread-out subset of coordinates (every Q, K and V head is hit), each by central
    // differences; the selection must not move under eps, or the loss is not differentiable there.
    const size_t stride = qkv.size() / 240 + 1;
    std::vector<double> analytic, numeric;
    for (size_t j = 0; j < qkv.size(); j += stride) {
      const double saved = qkv[j];
      double f[2];
      for (int side = 0; side < 2; ++side) {
        qkv[j] = saved + (side ? -1 : 1) * lh::testing::kFiniteDiffEps;
        lhl::LayerState<double> probe;
        const auto o = forward(s, qkv, &probe);
        REQUIRE(probe.idx == st.idx);
        f[side] = std::inner_product(o.begin(), o.end(), w.begin(), 0.0);
      }
      qkv[j] = saved;
      numeric.push_back((f[0] - f[1]) / (2 * lh::testing::kFiniteDiffEps));
      analytic.push_back(dqkv[j]);
    }
    CHECK(lh::testing::max_rel_error(analytic, numeric) < 1e-6);
    // Every token gets gradient through at least its coarsest window.
    size_t zero_rows = 0;
    for (int t = 0; t < s.g.N; ++t) {
      double sum = 0;
      for (int c = 0; c < s.width(); ++c) sum += std::fabs(dqkv[size_t(t) * s.width() + c]);
      zero_rows += sum == 0.0;
    }
    CHECK(zero_rows == 0);
  }
}

TEST_CASE("lighthouse layer: float and double agree", "[cpu][lighthouse]") {
  std::mt19937 rng(13);
  const Shape s{{512, 2, 2, 128}, 2, 4, 2, 8};
  const auto qd = randn<double>(s.qkv_size(), rng);
  const std::vector<float> qf(qd.begin(), qd.end());
  const std::vector<double> qd_rounded(qf.begin(), qf.end());  // same inputs, hence same scores
  lhl::LayerState<double> sd;
  lhl::LayerState<float> sf;
  const auto od = forward(s, qd_rounded, &sd);
  const auto of = forward(s, qf, &sf);
  REQUIRE(sd.idx == sf.idx);
  double worst = 0, scale = 0;
  for (size_t j = 0; j < od.size(); ++j) {
    worst = std::max(worst, std::fabs(od[j] - of[j]));
    scale = std::max(scale, std::fabs(od[j]));
  }
  CHECK(worst / scale < 1e-5);
}
