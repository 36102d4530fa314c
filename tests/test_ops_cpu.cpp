// CPU reference ops: finite-difference gradients (double), forward against naive formulas,
// float/double agreement, thread-count determinism and the accumulate contracts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "lighthouse/ops/cpu_reference.h"
#include "lighthouse/rng.h"
#include "support/finite_diff.h"
#include "support/padded_rows.h"

using namespace lh::cpu;
using lh::testing::max_rel_error;
using lh::testing::numerical_gradient;
using Vec = std::vector<double>;

namespace {
constexpr double kGradTol = 1e-6;    // analytic vs central differences, relative to max |grad|
constexpr double kExactTol = 1e-12;  // double op vs naive double formula (rounding only)
constexpr double kFloatTol = 1e-5;   // float op vs the same op in double

Vec random_vec(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  lh::Rng rng(seed);
  Vec v(n);
  for (auto& x : v) x = lo + (hi - lo) * rng.uniform();
  return v;
}
double weighted_sum(const Vec& out, const Vec& r) {
  double s = 0.0;
  for (size_t i = 0; i < out.size(); ++i) s += out[i] * r[i];
  return s;
}
std::vector<float> to_float(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }
Vec to_double(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }
void check_grad(const Vec& analytic, Vec& param, const std::function<double()>& loss) {
  const double err = max_rel_error(analytic, numerical_gradient(param, loss));
  INFO("max relative error " << err);
  CHECK(err < kGradTol);
}
// Sets the OpenMP thread count; returns the previous one.
int set_threads(int n) {
#ifdef _OPENMP
  const int prev = omp_get_max_threads();
  omp_set_num_threads(n);
  return prev;
#else
  return n;
#endif
}

// Attention problem shared by several tests: GQA with two query heads per kv head.
constexpr int kB = 2, kT = 7, kH = 4, kHkv = 2, kD = 8;
constexpr size_t kQkv = size_t(kB) * kT * (kH + 2 * kHkv) * kD, kOut = size_t(kB) * kT * kH * kD;
}  // namespace

TEST_CASE("embedding: forward gathers rows, backward scatter-adds and accumulates", "[cpu][ops]") {
  const int N = 6, C = 130, V = 4;  // C spans three column strips of the backward, the last partial
  const std::vector<int32_t> tok = {1, 3, 1, 0, 1, 2};  // repeats exercise the reduction
  Vec wte = random_vec(size_t(V) * C, 1), R = random_vec(size_t(N) * C, 2), out(R.size());
  embedding_forward(out.data(), tok.data(), wte.data(), N, C);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) CHECK(out[n * C + c] == wte[tok[n] * C + c]);
  Vec dwte(wte.size(), 0.0);
  embedding_backward(dwte.data(), R.data(), tok.data(), N, C);
  check_grad(dwte, wte, [&] { embedding_forward(out.data(), tok.data(), wte.data(), N, C); return weighted_sum(out, R); });
  Vec twice = dwte;
  embedding_backward(twice.data(), R.data(), tok.data(), N, C);
  for (size_t i = 0; i < dwte.size(); ++i) CHECK(twice[i] == Approx(2 * dwte[i]).epsilon(kExactTol));
}

TEST_CASE("rmsnorm: formula, gradients, accumulation, float agreement", "[cpu][ops]") {
  const int N = 3, C = 130;  // three column strips of the weight gradient, the last partial
  const double eps = 1e-5;
  Vec x = random_vec(size_t(N) * C, 3), w = random_vec(C, 4, 0.5, 1.5), R = random_vec(x.size(), 5);
  Vec out(x.size()), rstd(N);
  auto loss = [&] { rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps); return weighted_sum(out, R); };
  loss();
  for (int n = 0; n < N; ++n) {
    double ms = 0.0;
    for (int c = 0; c < C; ++c) ms += x[n * C + c] * x[n * C + c] / C;
    CHECK(rstd[n] == Approx(1.0 / std::sqrt(ms + eps)).epsilon(kExactTol));
    for (int c = 0; c < C; ++c) CHECK(out[n * C + c] == Approx(x[n * C + c] * w[c] / std::sqrt(ms + eps)).epsilon(kExactTol));
  }
  const Vec prior = random_vec(x.size(), 6);  // dx must be added onto this
  Vec dx = prior, dw(C, 0.0);
  rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
  Vec grad_x(x.size());
  for (size_t i = 0; i < x.size(); ++i) grad_x[i] = dx[i] - prior[i];
  check_grad(grad_x, x, loss);
  check_grad(dw, w, loss);
  Vec dw2 = dw, dx2(x.size(), 0.0);
  rmsnorm_backward(dx2.data(), dw2.data(), R.data(), x.data(), w.data(), rstd.data(), N, C);
  for (int c = 0; c < C; ++c) CHECK(dw2[c] == Approx(2 * dw[c]).epsilon(kExactTol));

  std::vector<float> xf = to_float(x), wf = to_float(w), of(x.size()), rf(N);
  rmsnorm_forward(of.data(), rf.data(), xf.data(), wf.data(), N, C, eps);
  CHECK(max_rel_error(to_double(of), out) < kFloatTol);
}

namespace {
// Naive double matmul: out[n, o] = sum_i x[n, i] w[o, i].
Vec naive_matmul(const Vec& a, const Vec& b, int N, int K, int M) {
  Vec out(size_t(N) * M, 0.0);
  for (int n = 0; n < N; ++n)
    for (int m = 0; m < M; ++m)
      for (int k = 0; k < K; ++k) out[size_t(n) * M + m] += a[size_t(n) * K + k] * b[size_t(m) * K + k];
  return out;
}
Vec transpose(const Vec& a, int rows, int cols) {
  Vec t(a.size());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t[size_t(c) * rows + r] = a[size_t(r) * cols + c];
  return t;
}
}  // namespace

TEST_CASE("matmul: gradients on a small odd shape", "[cpu][ops]") {
  const int N = 5, IC = 11, OC = 7;  // not multiples of any tile: every edge path runs
  Vec x = random_vec(size_t(N) * IC, 7), w = random_vec(size_t(OC) * IC, 8), R = random_vec(size_t(N) * OC, 9);
  Vec out(R.size());
  auto loss = [&] { matmul_forward(out.data(), x.data(), w.data(), N, IC, OC, OC); return weighted_sum(out, R); };
  Vec dx(x.size()), dw(w.size(), 0.0);
  matmul_backward(dx.data(), dw.data(), R.data(), x.data(), w.data(), N, IC, OC, OC);
  check_grad(dx, x, loss);
  check_grad(dw, w, loss);
  Vec dw2 = dw;
  matmul_backward<double>(nullptr, dw2.data(), R.data(), x.data(), w.data(), N, IC, OC, OC);
  for (size_t i = 0; i < dw.size(); ++i) CHECK(dw2[i] == Approx(2 * dw[i]).epsilon(kExactTol));
}

TEST_CASE("matmul: large shape against naive products, float agreement", "[cpu][ops]") {
  const int N = 301, IC = 37, OC = 270;  // beyond the row blocks and the backward k blocks
  Vec x = random_vec(size_t(N) * IC, 10), w = random_vec(size_t(OC) * IC, 11), dout = random_vec(size_t(N) * OC, 12);
  Vec out(dout.size()), dx(x.size()), dw(w.size(), 0.0);
  matmul_forward(out.data(), x.data(), w.data(), N, IC, OC, OC);
  matmul_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), N, IC, OC, OC);
  CHECK(max_rel_error(out, naive_matmul(x, w, N, IC, OC)) < kExactTol);
  CHECK(max_rel_error(dx, naive_matmul(dout, transpose(w, OC, IC), N, OC, IC)) < kExactTol);
  CHECK(max_rel_error(dw, naive_matmul(transpose(dout, N, OC), transpose(x, N, IC), OC, N, IC)) < kExactTol);

  std::vector<float> xf = to_float(x), wf = to_float(w), df = to_float(dout), of(out.size()), dxf(x.size()),
                     dwf(w.size(), 0.0f);
  matmul_forward(of.data(), xf.data(), wf.data(), N, IC, OC, OC);
  matmul_backward(dxf.data(), dwf.data(), df.data(), xf.data(), wf.data(), N, IC, OC, OC);
  CHECK(max_rel_error(to_double(of), out) < kFloatTol);
  CHECK(max_rel_error(to_double(dxf), dx) < kFloatTol);
  CHECK(max_rel_error(to_double(dwf), dw) < kFloatTol);
}

TEST_CASE("matmul, attention, embedding and rmsnorm backward are bitwise identical across thread counts", "[cpu][ops]") {
  const int N = 130, IC = 70, OC = 300;
  const std::vector<float> x = to_float(random_vec(size_t(N) * IC, 13)), w = to_float(random_vec(size_t(OC) * IC, 14)),
                           dout = to_float(random_vec(size_t(N) * OC, 15));
  const int B = 2, T = 33, H = 4, Hkv = 2, D = 16;
  const std::vector<float> qkv = to_float(random_vec(size_t(B) * T * (H + 2 * Hkv) * D, 16)),
                           ao_grad = to_float(random_vec(size_t(B) * T * H * D, 17));
  auto run = [&](int threads) {
    const int prev = set_threads(threads);
    std::vector<float> out(dout.size()), dx(x.size()), dw(w.size(), 0.5f), ao(ao_grad.size()), lse(size_t(B) * H * T),
        dqkv(qkv.size());
    matmul_forward(out.data(), x.data(), w.data(), N, IC, OC, OC);
    matmul_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), N, IC, OC, OC);
    attention_forward(ao.data(), lse.data(), qkv.data(), B, T, H, Hkv, D);
    attention_backward(dqkv.data(), ao_grad.data(), qkv.data(), ao.data(), lse.data(), B, T, H, Hkv, D);
    // The column-strip reductions: N = 130 rows of IC = 70 columns (two strips), repeated tokens.
    std::vector<int32_t> tokens(N);
    for (int n = 0; n < N; ++n) tokens[n] = (n * 7) % 11;
    std::vector<float> dwte(size_t(11) * IC, 0.25f), dnx(x.size(), 0.0f), dnw(IC, 0.0f), rstd(N), nout(x.size());
    embedding_backward(dwte.data(), dx.data(), tokens.data(), N, IC);
    const std::vector<float> nw(w.begin(), w.begin() + IC);
    rmsnorm_forward(nout.data(), rstd.data(), x.data(), nw.data(), N, IC, 1e-5);
    rmsnorm_backward(dnx.data(), dnw.data(), dx.data(), x.data(), nw.data(), rstd.data(), N, IC);
    set_threads(prev);
    return std::vector<std::vector<float>>{out, dx, dw, ao, lse, dqkv, dwte, nout, dnx, dnw};
  };
  const auto one = run(1), three = run(3);
  for (size_t i = 0; i < one.size(); ++i) CHECK(one[i] == three[i]);  // exact equality
}

TEST_CASE("rope: explicit rotation matrices, gradient, float agreement", "[cpu][ops]") {
  const int B = 2, T = 5, H = 2, Hkv = 1, D = 6;  // positions restart at 0 in each sequence
  const double theta = 10000.0;
  const int width = (H + 2 * Hkv) * D;
  const Vec x0 = random_vec(size_t(B) * T * width, 18);
  Vec y = x0;
  rope_forward(y.data(), B, T, H, Hkv, D, theta);
  for (int b = 0; b < B; ++b)
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H + 2 * Hkv; ++h) {
      const size_t row = (size_t(b) * T + t) * width;
      Vec M(size_t(D) * D, 0.0);  // rotation of token t; identity for the value head
      for (int i = 0; i < D / 2; ++i) {
        const float inv_freq = 1.0f / std::pow(float(theta), float(2 * i) / float(D));
        const double a = h < H + Hkv ? double(float(t) * inv_freq) : 0.0;
        M[i * D + i] = M[(i + D / 2) * D + i + D / 2] = std::cos(a);
        M[i * D + i + D / 2] = -std::sin(a);
        M[(i + D / 2) * D + i] = std::sin(a);
      }
      for (int r = 0; r < D; ++r) {
        double expect = 0.0;
        for (int c = 0; c < D; ++c) expect += M[r * D + c] * x0[row + h * D + c];
        CHECK(y[row + h * D + r] == Approx(expect).epsilon(kExactTol).margin(kExactTol));
      }
    }
  Vec x = x0, R = random_vec(x.size(), 19), g = R, out(x.size());
  rope_backward(g.data(), B, T, H, Hkv, D, theta);
  check_grad(g, x, [&] { out = x; rope_forward(out.data(), B, T, H, Hkv, D, theta); return weighted_sum(out, R); });
  std::vector<float> yf = to_float(x0);
  rope_forward(yf.data(), B, T, H, Hkv, D, theta);
  CHECK(max_rel_error(to_double(yf), y) < kFloatTol);
}

TEST_CASE("attention: explicit softmax matrix, lse, GQA gradients, float agreement", "[cpu][ops]") {
  Vec qkv = random_vec(kQkv, 20), R = random_vec(kOut, 21), out(kOut), lse(size_t(kB) * kH * kT);
  auto loss = [&] { attention_forward(out.data(), lse.data(), qkv.data(), kB, kT, kH, kHkv, kD); return weighted_sum(out, R); };
  loss();
  const int W = (kH + 2 * kHkv) * kD;
  for (int b = 0; b < kB; ++b)
    for (int h = 0; h < kH; ++h) {
      const int g = h / (kH / kHkv);
      const double* base = qkv.data() + size_t(b) * kT * W;
      Vec P(size_t(kT) * kT, 0.0);  // full masked softmax matrix
      for (int t = 0; t < kT; ++t) {
        double z = 0.0;
        for (int s = 0; s <= t; ++s) {
          double dot = 0.0;
          for (int d = 0; d < kD; ++d) dot += base[t * W + h * kD + d] * base[s * W + (kH + g) * kD + d];
          P[t * kT + s] = std::exp(dot / std::sqrt(double(kD)));
          z += P[t * kT + s];
        }
        for (int s = 0; s <= t; ++s) P[t * kT + s] /= z;
        CHECK(lse[(size_t(b) * kH + h) * kT + t] == Approx(std::log(z)).epsilon(kExactTol));
      }
      for (int t = 0; t < kT; ++t)
        for (int d = 0; d < kD; ++d) {
          double o = 0.0;
          for (int s = 0; s < kT; ++s) o += P[t * kT + s] * base[s * W + (kH + kHkv + g) * kD + d];
          CHECK(out[(size_t(b) * kT + t) * kH * kD + h * kD + d] == Approx(o).epsilon(kExactTol).margin(kExactTol));
        }
    }
  Vec dqkv(kQkv, -7.0);  // garbage: every element must be written
  attention_backward(dqkv.data(), R.data(), qkv.data(), out.data(), lse.data(), kB, kT, kH, kHkv, kD);
  check_grad(dqkv, qkv, loss);

  std::vector<float> qf = to_float(qkv), of(kOut), lf(lse.size());
  attention_forward(of.data(), lf.data(), qf.data(), kB, kT, kH, kHkv, kD);
  loss();
  CHECK(max_rel_error(to_double(of), out) < kFloatTol);
  CHECK(max_rel_error(to_double(lf), lse) < kFloatTol);
}

TEST_CASE("swiglu: formula, gradients, float agreement", "[cpu][ops]") {
  const int N = 3, F = 4;
  Vec gu = random_vec(size_t(N) * 2 * F, 22, -4.0, 4.0), R = random_vec(size_t(N) * F, 23), out(R.size());
  auto loss = [&] { swiglu_forward(out.data(), gu.data(), N, F); return weighted_sum(out, R); };
  loss();
  for (int n = 0; n < N; ++n)
    for (int f = 0; f < F; ++f) {
      const double g = gu[n * 2 * F + f], u = gu[n * 2 * F + F + f];
      CHECK(out[n * F + f] == Approx(g / (1.0 + std::exp(-g)) * u).epsilon(kExactTol));
    }
  Vec dgu(gu.size());
  swiglu_backward(dgu.data(), R.data(), gu.data(), N, F);
  check_grad(dgu, gu, loss);
  std::vector<float> gf = to_float(gu), of(out.size());
  swiglu_forward(of.data(), gf.data(), N, F);
  CHECK(max_rel_error(to_double(of), out) < kFloatTol);
}

TEST_CASE("cross-entropy: log-sum-exp, stability, gradient, in place", "[cpu][ops]") {
  const int N = 3, V = 9;
  const double dloss = 0.37;
  const std::vector<int32_t> tgt = {4, 0, 8};
  Vec logits = random_vec(size_t(N) * V, 24, -3.0, 3.0), losses(N), lse(N), perturbed_lse(N);
  // The finite differences' forwards write their own lse: `lse` stays the one at these logits.
  auto loss = [&] {
    cross_entropy_forward(losses.data(), perturbed_lse.data(), logits.data(), tgt.data(), N, V, V);
    return dloss * (losses[0] + losses[1] + losses[2]);
  };
  loss();
  lse = perturbed_lse;
  for (int n = 0; n < N; ++n) {
    double z = 0.0;
    for (int v = 0; v < V; ++v) z += std::exp(logits[n * V + v]);
    CHECK(lse[n] == Approx(std::log(z)).epsilon(kExactTol));
    CHECK(losses[n] == Approx(std::log(z) - logits[n * V + tgt[n]]).epsilon(kExactTol));
  }
  Vec shifted = logits, shifted_losses(N), shifted_lse(N);  // exp(1000) overflows unless the max is subtracted
  for (auto& l : shifted) l += 1000.0;
  cross_entropy_forward(shifted_losses.data(), shifted_lse.data(), shifted.data(), tgt.data(), N, V, V);
  CHECK(max_rel_error(shifted_losses, losses) < 1e-9);  // 1000 + O(1) loses ~13 bits of the O(1) part
  Vec dl(logits.size()), shifted_dl(logits.size());
  cross_entropy_backward(dl.data(), logits.data(), lse.data(), tgt.data(), N, V, V, dloss);
  check_grad(dl, logits, loss);
  cross_entropy_backward(shifted_dl.data(), shifted.data(), shifted_lse.data(), tgt.data(), N, V, V, dloss);
  CHECK(max_rel_error(shifted_dl, dl) < 1e-9);
  Vec inplace = logits;
  cross_entropy_backward(inplace.data(), inplace.data(), lse.data(), tgt.data(), N, V, V, dloss);
  CHECK(inplace == dl);
  std::vector<float> lf = to_float(logits), lossf(N), lsef(N), dlf(logits.size());
  cross_entropy_forward(lossf.data(), lsef.data(), lf.data(), tgt.data(), N, V, V);
  CHECK(max_rel_error(to_double(lossf), losses) < kFloatTol);
  cross_entropy_backward(dlf.data(), lf.data(), lsef.data(), tgt.data(), N, V, V, dloss);
  CHECK(max_rel_error(to_double(dlf), dl) < kFloatTol);
}

// The logits' rows are padded (ModelConfig::logits_row_stride). Padding starts as NaN, which
// would poison any result that read it: the forward must overwrite it with zeros, the
// cross-entropy backward too, and nothing may read it.
TEST_CASE("matmul and cross-entropy on padded rows: the dense results, zero padding", "[cpu][ops]") {
  const int N = 5, IC = 11, V = 7, ld = 16;
  const double nan = std::nan("");
  auto padded = [&](const Vec& dense) {
    Vec p(size_t(N) * ld, nan);
    for (size_t n = 0; n < size_t(N); ++n) std::copy_n(&dense[n * V], V, &p[n * ld]);
    return p;
  };
  auto unpadded = [&](const Vec& p) {  // CHECKs that the padding holds zeros
    auto u = lh::testing::unpad_rows(p, N, V, ld);
    CHECK(u.nonzero_padding == 0);
    return u.values;
  };
  const Vec x = random_vec(size_t(N) * IC, 40), w = random_vec(size_t(V) * IC, 41);
  Vec out(size_t(N) * V), out_padded(size_t(N) * ld, nan);
  matmul_forward(out.data(), x.data(), w.data(), N, IC, V, V);
  matmul_forward(out_padded.data(), x.data(), w.data(), N, IC, V, ld);
  CHECK(unpadded(out_padded) == out);

  const std::vector<int32_t> tgt = {6, 0, 3, 3, 1};
  Vec logits = padded(out), losses(N), losses_padded(N), lse(N), lse_padded(N), dl(out.size());
  cross_entropy_forward(losses.data(), lse.data(), out.data(), tgt.data(), N, V, V);
  cross_entropy_forward(losses_padded.data(), lse_padded.data(), logits.data(), tgt.data(), N, V, ld);
  CHECK(losses_padded == losses);
  CHECK(lse_padded == lse);
  cross_entropy_backward(dl.data(), out.data(), lse.data(), tgt.data(), N, V, V, 0.5);
  cross_entropy_backward(logits.data(), logits.data(), lse_padded.data(), tgt.data(), N, V, ld, 0.5);  // in place
  CHECK(unpadded(logits) == dl);

  Vec dx(x.size()), dw(w.size(), 0.25), dx_padded(x.size()), dw_padded(w.size(), 0.25);
  matmul_backward(dx.data(), dw.data(), dl.data(), x.data(), w.data(), N, IC, V, V);
  matmul_backward(dx_padded.data(), dw_padded.data(), padded(dl).data(), x.data(), w.data(), N, IC, V, ld);
  CHECK(dx_padded == dx);
  CHECK(dw_padded == dw);
}

TEST_CASE("residual: add with aliasing, gradient via accumulate", "[cpu][ops]") {
  const size_t n = 10;
  Vec a = random_vec(n, 25), b = random_vec(n, 26), R = random_vec(n, 27), out(n);
  auto loss = [&] { residual_forward(out.data(), a.data(), b.data(), n); return weighted_sum(out, R); };
  loss();
  for (size_t i = 0; i < n; ++i) CHECK(out[i] == a[i] + b[i]);
  Vec alias = a;
  residual_forward(alias.data(), alias.data(), b.data(), n);
  CHECK(alias == out);
  Vec da(n, 0.0), db(n, 0.0);  // the residual gradient flows unchanged into both branches
  accumulate(da.data(), R.data(), n);
  accumulate(db.data(), R.data(), n);
  check_grad(da, a, loss);
  check_grad(db, b, loss);
  accumulate(da.data(), R.data(), n);
  for (size_t i = 0; i < n; ++i) CHECK(da[i] == 2 * R[i]);
}

TEST_CASE("adamw and gradient-norm helpers match hand-written formulas", "[cpu][ops]") {
  const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  const size_t n = 5;
  Vec p = random_vec(n, 28), m(n, 0.0), v(n, 0.0), rp = p, rm = m, rv = v;
  std::vector<float> pf = to_float(p), mf(n, 0.0f), vf(n, 0.0f);
  for (int step = 1; step <= 3; ++step) {
    const Vec g = random_vec(n, 100 + step);
    for (size_t i = 0; i < n; ++i) {
      rm[i] = b1 * rm[i] + (1 - b1) * g[i];
      rv[i] = b2 * rv[i] + (1 - b2) * g[i] * g[i];
      const double mhat = rm[i] / (1 - std::pow(b1, step)), vhat = rv[i] / (1 - std::pow(b2, step));
      rp[i] -= lr * (mhat / (std::sqrt(vhat) + eps) + wd * rp[i]);
    }
    adamw_update(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, step);
    const std::vector<float> gf = to_float(g);
    adamw_update(pf.data(), gf.data(), mf.data(), vf.data(), n, lr, b1, b2, eps, wd, step);
  }
  CHECK(max_rel_error(p, rp) < kExactTol);
  CHECK(max_rel_error(m, rm) < kExactTol);
  CHECK(max_rel_error(v, rv) < kExactTol);
  CHECK(max_rel_error(to_double(pf), rp) < kFloatTol);

  const Vec zero(n, 0.0), before = p;  // no gradient, no decay: parameters must not move
  Vec m0(n, 0.0), v0(n, 0.0);
  adamw_update(p.data(), zero.data(), m0.data(), v0.data(), n, lr, b1, b2, eps, 0.0, 1);
  CHECK(p == before);

  // grad_scale (clipping folded in) gives the bits of scale_inplace followed by an unscaled update.
  std::vector<float> fp = pf, fm = mf, fv = vf, sp = pf, sm = mf, sv = vf;
  const std::vector<float> gf = to_float(random_vec(n, 200)), gf_before = gf;
  std::vector<float> gf_scaled = gf;
  scale_inplace(gf_scaled.data(), n, 0.37);
  adamw_update(fp.data(), gf.data(), fm.data(), fv.data(), n, lr, b1, b2, eps, wd, 4, 0.37);
  adamw_update(sp.data(), gf_scaled.data(), sm.data(), sv.data(), n, lr, b1, b2, eps, wd, 4);
  CHECK(fp == sp);
  CHECK(fm == sm);
  CHECK(fv == sv);
  CHECK(gf == gf_before);

  const Vec big = random_vec(10007, 29);  // several sum_squares chunks, one partial
  double ss = 0.0;
  for (double x : big) ss += x * x;
  CHECK(sum_squares(big.data(), big.size()) == Approx(ss).epsilon(kExactTol));
  const int prev = set_threads(1);
  const double one = sum_squares(big.data(), big.size());
  set_threads(3);
  const double three = sum_squares(big.data(), big.size());
  set_threads(prev);
  CHECK(one == three);
  Vec scaled = big;
  scale_inplace(scaled.data(), scaled.size(), 0.5);
  size_t wrong = 0;
  for (size_t i = 0; i < big.size(); ++i) wrong += scaled[i] != 0.5 * big[i];
  CHECK(wrong == 0);
}
