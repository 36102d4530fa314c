// CUDA kernels (kernels/cuda/kernels.h) against the fp32 CPU reference on bf16-rounded random
// inputs, at odd sizes that exercise both the 16-byte vector paths and the scalar fallbacks.
// Tolerances (max_rel_err, relative per element with a floor of 1e-3 x the tensor's max |value|
// unless stated): bf16 outputs 1e-2 (one bf16 rounding is 2^-9 = 2e-3); fp32 statistics and
// gradients 1e-4; AdamW fp32 state 1e-6. Also: bitwise determinism of every reduction kernel, and
// sum_squares against a host double sum (rel 1e-9).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#include "cuda/kernels.h"
#include "lighthouse/ops/cpu_reference.h"
#include "support/cuda_test_util.h"
#include "support/gpu.h"
#include "support/padded_rows.h"

using namespace lh::testing;
using lh::cuda::bf16;
using F = std::vector<float>;
using Bits = std::vector<uint16_t>;

namespace {
constexpr double kBf16Tol = 1e-2, kF32Tol = 1e-4, kAdamTol = 1e-6;
#define LH_ERR(name, expr, tol) CHECK(report_err(name, expr) <= (tol))

F run_bf16(const DeviceBuffer<bf16>& b) { return from_bf16(b.download<uint16_t>()); }
}  // namespace

TEST_CASE("cuda embedding forward/backward vs CPU", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  using lh::cuda::EmbeddingBackward;
  // Byte vocabulary (the scan), GPT-2's (the sort), and one past 2^16 (more radix passes).
  for (auto [V, N, C] : {std::tuple{257, 37, 72}, std::tuple{257, 37, 100}, std::tuple{257, 3000, 264},
                         std::tuple{50257, 3000, 264}, std::tuple{70001, 2000, 100}}) {
    INFO("V=" << V << " N=" << N << " C=" << C);
    auto tok = random_tokens(N, V, 11 + C);
    for (int n = 0; n < N / 4; ++n) tok[size_t(n) * 4] = V - 1 - n % 3;  // long runs, the largest ids
    const F wte = random_values(size_t(V) * C, 12), dout = random_values(size_t(N) * C, 13);
    const F dwte0 = random_values(size_t(V) * C, 14, -1, 1, false);
    F out_ref(size_t(N) * C), dwte_ref = dwte0;
    lh::cpu::embedding_forward(out_ref.data(), tok.data(), wte.data(), N, C);
    lh::cpu::embedding_backward(dwte_ref.data(), dout.data(), tok.data(), N, C);
    DeviceBuffer<int32_t> d_tok(tok);
    DeviceBuffer<bf16> d_wte(to_bf16(wte)), d_out(size_t(N) * C), d_dout(to_bf16(dout));
    d_out.poison();
    lh::cuda::embedding_forward(d_out.get(), d_tok.get(), d_wte.get(), N, C, 0);
    LH_ERR("embedding fwd (exact gather)", max_rel_err(run_bf16(d_out), out_ref), 0.0);
    std::vector<F> dwte;  // per path
    for (auto path : {EmbeddingBackward::kScan, EmbeddingBackward::kSorted, EmbeddingBackward::kAuto}) {
      DeviceBuffer<float> d_dwte(dwte0);
      DeviceBuffer<char> scratch(std::max<size_t>(1, lh::cuda::embedding_backward_scratch_bytes(N, V, path)));
      lh::cuda::embedding_backward(d_dwte.get(), d_dout.get(), d_tok.get(), N, C, V, scratch.get(), 0, path);
      dwte.push_back(d_dwte.download());
    }
    // Same association as the reference (dwte + dout rows in increasing n): expected bit-exact.
    LH_ERR("embedding bwd dwte fp32 (scan)", max_rel_err(dwte[0], dwte_ref), 0.0);
    CHECK(dwte[1] == dwte[0]);  // the sort gives the scan's bits
    CHECK(dwte[2] == dwte[0]);
  }
}

TEST_CASE("cuda rmsnorm forward/backward vs CPU", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  // 256 * k (k = 1..4) take the backward's one-pass row kernel with k chunks; others the two-pass one.
  for (auto [N, C] : {std::pair{37, 72}, std::pair{37, 100}, std::pair{130, 1024}, std::pair{61, 768},
                      std::pair{5, 256}, std::pair{33, 512}, std::pair{40, 2048}}) {
    INFO("N=" << N << " C=" << C);
    const size_t nc = size_t(N) * C;
    const F x = random_values(nc, 21, -2, 2), w = random_values(C, 22, 0.5, 1.5), dout = random_values(nc, 23);
    const F dx0 = random_values(nc, 24), dw0 = random_values(C, 25, -1, 1, false);
    F out_ref(nc), rstd_ref(N), dx_ref = dx0, dw_ref = dw0;
    lh::cpu::rmsnorm_forward(out_ref.data(), rstd_ref.data(), x.data(), w.data(), N, C, 1e-5);
    lh::cpu::rmsnorm_backward(dx_ref.data(), dw_ref.data(), dout.data(), x.data(), w.data(), rstd_ref.data(), N, C);
    DeviceBuffer<bf16> d_x(to_bf16(x)), d_w(to_bf16(w)), d_out(nc), d_dout(to_bf16(dout)), d_dx(to_bf16(dx0));
    DeviceBuffer<float> d_rstd(N), d_rstd_ref(rstd_ref), d_dw(dw0);
    DeviceBuffer<char> scratch(lh::cuda::rmsnorm_backward_scratch_bytes(N, C));
    d_out.poison();
    d_rstd.poison();
    lh::cuda::rmsnorm_forward(d_out.get(), d_rstd.get(), d_x.get(), d_w.get(), N, C, 1e-5f, 0);
    // Backward gets the reference rstd, so it is checked on exactly the reference's inputs.
    lh::cuda::rmsnorm_backward(d_dx.get(), d_dw.get(), d_dout.get(), d_x.get(), d_w.get(), d_rstd_ref.get(), N, C,
                               scratch.get(), 0);
    LH_ERR("rmsnorm fwd out bf16", max_rel_err(run_bf16(d_out), out_ref), kBf16Tol);
    LH_ERR("rmsnorm fwd rstd fp32", max_rel_err(d_rstd.download(), rstd_ref), kF32Tol);
    LH_ERR("rmsnorm bwd dx bf16 (accumulated)", max_rel_err(run_bf16(d_dx), dx_ref), kBf16Tol);
    LH_ERR("rmsnorm bwd dweight fp32", max_rel_err(d_dw.download(), dw_ref), kF32Tol);
  }
}

TEST_CASE("cuda rope forward/backward vs CPU", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  const int B = 2, T = 129, H = 4, Hkv = 2;
  const double theta = 10000.0;
  for (int D : {64, 128, 8, 24, 256}) {
    INFO("D=" << D);
    const size_t n = size_t(B) * T * (H + 2 * Hkv) * D;
    const F qkv = random_values(n, 31 + D);
    F table(size_t(T) * D);
    lh::cpu::rope_cos_sin_table(table.data(), T, D, theta);
    DeviceBuffer<float> d_table(table);
    for (bool forward : {true, false}) {
      F ref = qkv;
      if (forward) lh::cpu::rope_forward(ref.data(), B, T, H, Hkv, D, theta);
      else lh::cpu::rope_backward(ref.data(), B, T, H, Hkv, D, theta);
      DeviceBuffer<bf16> d(to_bf16(qkv));
      if (forward) lh::cuda::rope_forward(d.get(), d_table.get(), B, T, H, Hkv, D, 0);
      else lh::cuda::rope_backward(d.get(), d_table.get(), B, T, H, Hkv, D, 0);
      LH_ERR(forward ? "rope fwd bf16" : "rope bwd bf16", max_rel_err(run_bf16(d), ref), kBf16Tol);
    }
  }
}

TEST_CASE("cuda swiglu forward/backward vs CPU", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  for (auto [N, F_] : {std::pair{37, 100}, std::pair{37, 128}, std::pair{5, 3}}) {
    INFO("N=" << N << " F=" << F_);
    const size_t nf = size_t(N) * F_;
    const F gu = random_values(2 * nf, 41, -6, 6), dout = random_values(nf, 42);
    F out_ref(nf), dgu_ref(2 * nf);
    lh::cpu::swiglu_forward(out_ref.data(), gu.data(), N, F_);
    lh::cpu::swiglu_backward(dgu_ref.data(), dout.data(), gu.data(), N, F_);
    DeviceBuffer<bf16> d_gu(to_bf16(gu)), d_out(nf), d_dout(to_bf16(dout)), d_dgu(2 * nf);
    d_out.poison();
    d_dgu.poison();
    lh::cuda::swiglu_forward(d_out.get(), d_gu.get(), N, F_, 0);
    lh::cuda::swiglu_backward(d_dgu.get(), d_dout.get(), d_gu.get(), N, F_, 0);
    LH_ERR("swiglu fwd bf16", max_rel_err(run_bf16(d_out), out_ref), kBf16Tol);
    LH_ERR("swiglu bwd bf16", max_rel_err(run_bf16(d_dgu), dgu_ref), kBf16Tol);
  }
}

TEST_CASE("cuda residual, accumulate and conversions vs CPU", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  for (size_t offset : {size_t(0), size_t(1)}) {  // 1: misaligned pointers take the scalar path
    const size_t n = 1000003;
    INFO("offset=" << offset);
    const F a = random_values(n + 1, 51), b = random_values(n + 1, 52), f32 = random_values(n + 1, 53, -3, 3, false);
    F sum_ref(a.begin() + offset, a.begin() + offset + n);
    F b_off(b.begin() + offset, b.begin() + offset + n);
    lh::cpu::residual_forward(sum_ref.data(), sum_ref.data(), b_off.data(), n);
    DeviceBuffer<bf16> d_a(to_bf16(a)), d_b(to_bf16(b)), d_out(n + 1), d_bf(n + 1);
    DeviceBuffer<float> d_f32(f32), d_back(n + 1);
    d_out.poison();
    lh::cuda::residual_forward(d_out.get() + offset, d_a.get() + offset, d_b.get() + offset, n, 0);
    F got = run_bf16(d_out);
    LH_ERR("residual fwd bf16", max_rel_err(F(got.begin() + offset, got.begin() + offset + n), sum_ref), kBf16Tol);
    lh::cuda::accumulate(d_a.get() + offset, d_b.get() + offset, n, 0);  // a += b
    got = run_bf16(d_a);
    LH_ERR("accumulate bf16", max_rel_err(F(got.begin() + offset, got.begin() + offset + n), sum_ref), kBf16Tol);
    lh::cuda::convert_f32_to_bf16(d_bf.get() + offset, d_f32.get() + offset, n, 0);
    lh::cuda::convert_bf16_to_f32(d_back.get() + offset, d_bf.get() + offset, n, 0);
    // Round trip equals host round-to-nearest-even exactly.
    const F back = d_back.download();
    size_t mismatches = 0;
    for (size_t i = offset; i < offset + n; ++i) mismatches += back[i] != from_bf16_bits(to_bf16_bits(f32[i]));
    CHECK(mismatches == 0);
  }
}

TEST_CASE("cuda cross-entropy forward/backward vs CPU", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  // Rows in registers for V <= 1024 (4, 8, 16 or 32 logits a lane: V = 100, 200, 257, 1000), the
  // streaming kernel above.
  for (auto [N, V] : {std::pair{37, 257}, std::pair{37, 100}, std::pair{29, 200}, std::pair{23, 1000},
                      std::pair{19, 3001}}) {
    INFO("N=" << N << " V=" << V);
    const size_t nv = size_t(N) * V;
    const F logits = random_values(nv, 61 + V, -8, 8);
    const auto tgt = random_tokens(N, V, 62);
    const float dloss = 1.0f / N;
    F loss_ref(N), lse_ref(N), dl_ref(nv);
    lh::cpu::cross_entropy_forward(loss_ref.data(), lse_ref.data(), logits.data(), tgt.data(), N, V, V);
    lh::cpu::cross_entropy_backward(dl_ref.data(), logits.data(), lse_ref.data(), tgt.data(), N, V, V, double(dloss));
    DeviceBuffer<bf16> d_logits(to_bf16(logits));
    DeviceBuffer<int32_t> d_tgt(tgt);
    DeviceBuffer<float> d_loss(N), d_lse(N);
    d_loss.poison();
    d_lse.poison();
    lh::cuda::cross_entropy_forward(d_loss.get(), d_lse.get(), d_logits.get(), d_tgt.get(), N, V, V, 0);
    // The backward reads the forward's lse, not the CPU's: an error there shows up in dlogits.
    lh::cuda::cross_entropy_backward(d_logits.get(), d_logits.get(), d_lse.get(), d_tgt.get(), N, V, V, dloss,
                                     0);  // in place
    LH_ERR("cross-entropy fwd loss fp32", max_rel_err(d_loss.download(), loss_ref), kF32Tol);
    LH_ERR("cross-entropy fwd log-sum-exp fp32", max_rel_err(d_lse.download(), lse_ref), kF32Tol);
    // Floor 1e-4 of the max: small probabilities are checked relative to themselves.
    LH_ERR("cross-entropy bwd dlogits bf16 (in place)", max_rel_err(run_bf16(d_logits), dl_ref, 1e-4), kBf16Tol);

    // Rows padded to ld with NaN: the forward must not read the padding, the backward must zero it.
    const int ld = V + 8 - V % 8;
    F padded(size_t(N) * ld, std::nanf(""));
    for (size_t n = 0; n < size_t(N); ++n) std::copy_n(&logits[n * V], V, &padded[n * ld]);
    DeviceBuffer<bf16> d_padded(to_bf16(padded));
    DeviceBuffer<float> d_loss_padded(N), d_lse_padded(N);
    lh::cuda::cross_entropy_forward(d_loss_padded.get(), d_lse_padded.get(), d_padded.get(), d_tgt.get(), N, V, ld, 0);
    lh::cuda::cross_entropy_backward(d_padded.get(), d_padded.get(), d_lse_padded.get(), d_tgt.get(), N, V, ld, dloss,
                                     0);
    // Large V takes the 16-byte path on padded rows (another summation order): the CPU decides.
    LH_ERR("cross-entropy fwd loss fp32 (padded rows)", max_rel_err(d_loss_padded.download(), loss_ref), kF32Tol);
    const auto dl_padded = unpad_rows(run_bf16(d_padded), N, V, ld);
    LH_ERR("cross-entropy bwd dlogits bf16 (padded rows)", max_rel_err(dl_padded.values, dl_ref, 1e-4), kBf16Tol);
    CHECK(dl_padded.nonzero_padding == 0);
  }
}

TEST_CASE("cuda AdamW, scale and sum_squares vs CPU", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  for (size_t n : {size_t(1001), size_t(1) << 20}) {
    INFO("n=" << n);
    const F p0 = random_values(n, 71, -1, 1, false), g = random_values(n, 72, -0.1f, 0.1f, false);
    const F m0 = random_values(n, 73, -0.01f, 0.01f, false), v0 = random_values(n, 74, 1e-6f, 1e-3f, false);
    F p = p0, m = m0, v = v0;
    // The reference gets the same float hyperparameters the kernel does.
    lh::cpu::adamw_update(p.data(), g.data(), m.data(), v.data(), n, double(3e-3f), double(0.9f), double(0.95f),
                          double(1e-8f), double(0.1f), 3);
    DeviceBuffer<float> d_p(p0), d_g(g), d_m(m0), d_v(v0);
    DeviceBuffer<bf16> d_copy(n);
    d_copy.poison();
    lh::cuda::adamw_update(d_p.get(), d_g.get(), d_m.get(), d_v.get(), d_copy.get(), n, 3e-3f, 0.9f, 0.95f, 1e-8f,
                           0.1f, 3, 1.0f, 0);
    // fp32 state relative to the tensor's max |value| (floor 1): m = b1 m + (1-b1) g cancels, so
    // per-element relative error near zero says nothing about the kernel.
    LH_ERR("adamw param fp32", max_rel_err(d_p.download(), p, 1.0), kAdamTol);
    LH_ERR("adamw m fp32", max_rel_err(d_m.download(), m, 1.0), kAdamTol);
    LH_ERR("adamw v fp32", max_rel_err(d_v.download(), v, 1.0), kAdamTol);
    LH_ERR("adamw bf16 copy", max_rel_err(run_bf16(d_copy), p), kBf16Tol);

    // Clipping folded into the update: the same bits as scaling the gradient in place first.
    DeviceBuffer<float> f_p(p0), f_g(g), f_m(m0), f_v(v0), s_p(p0), s_g(g), s_m(m0), s_v(v0);
    DeviceBuffer<bf16> f_copy(n), s_copy(n);
    const float clip = 0.37f;
    lh::cuda::adamw_update(f_p.get(), f_g.get(), f_m.get(), f_v.get(), f_copy.get(), n, 3e-3f, 0.9f, 0.95f, 1e-8f,
                           0.1f, 3, clip, 0);
    lh::cuda::scale_inplace(s_g.get(), n, clip, 0);
    lh::cuda::adamw_update(s_p.get(), s_g.get(), s_m.get(), s_v.get(), s_copy.get(), n, 3e-3f, 0.9f, 0.95f, 1e-8f,
                           0.1f, 3, 1.0f, 0);
    CHECK(f_p.download() == s_p.download());
    CHECK(f_m.download() == s_m.download());
    CHECK(f_v.download() == s_v.download());
    CHECK(run_bf16(f_copy) == run_bf16(s_copy));
    CHECK(f_g.download() == g);  // the gradient buffer is only read
    CHECK(f_p.download() != d_p.download());  // the scale did change the update

    DeviceBuffer<char> scratch(lh::cuda::sum_squares_scratch_bytes(n));
    DeviceBuffer<double> d_res(1);
    lh::cuda::sum_squares(d_res.get(), d_g.get(), n, scratch.get(), 0);
    double host = 0.0;
    for (float x : g) host += double(x) * x;
    LH_ERR("sum_squares vs host double (rel)", std::fabs(d_res.download()[0] - host) / host, 1e-9);

    F scaled = g;
    lh::cpu::scale_inplace(scaled.data(), n, double(0.37f));
    lh::cuda::scale_inplace(d_g.get(), n, 0.37f, 0);
    LH_ERR("scale_inplace fp32", max_rel_err(d_g.download(), scaled, 1e-6), kAdamTol);
  }
}

TEST_CASE("cuda reduction kernels are bitwise deterministic", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  const int N = 8192, C = 1024, V = 257;
  const size_t nc = size_t(N) * C;
  // Skewed tokens (a few very frequent bytes, as in text) stress the long per-warp chains.
  auto tok = random_tokens(N, V, 81);
  for (size_t i = 0; i < tok.size(); i += 3) tok[i] = 32;
  const Bits x = to_bf16(random_values(nc, 82, -2, 2)), dy = to_bf16(random_values(nc, 83)), w = to_bf16(random_values(C, 84));
  const F rstd = random_values(N, 85, 0.5, 2, false), dwte0(size_t(V) * C, 0.5f);
  DeviceBuffer<int32_t> d_tok(tok);
  DeviceBuffer<bf16> d_x(x), d_dy(dy), d_w(w), d_dx(nc);
  DeviceBuffer<float> d_rstd(rstd), d_dw(C), d_dwte(size_t(V) * C), d_loss(N), d_lse(N);
  DeviceBuffer<char> scratch(std::max(lh::cuda::rmsnorm_backward_scratch_bytes(N, C),
                                      lh::cuda::sum_squares_scratch_bytes(nc)));
  DeviceBuffer<double> d_ss(1);
  // The same skewed tokens spread over GPT-2's vocabulary: the sorted embedding backward.
  const int big_v = 50257;
  std::vector<int32_t> big_tok(tok);
  for (auto& t : big_tok) t *= big_v / V;
  DeviceBuffer<int32_t> d_big_tok(big_tok);
  DeviceBuffer<float> d_big_dwte(size_t(big_v) * C);
  DeviceBuffer<char> sort_scratch(lh::cuda::embedding_backward_scratch_bytes(N, big_v));
  auto run_all = [&] {
    std::vector<std::vector<char>> out;
    auto bytes = [&](const auto& v) {
      const char* p = reinterpret_cast<const char*>(v.data());
      out.emplace_back(p, p + v.size() * sizeof(v[0]));
    };
    d_dwte.upload(dwte0);
    lh::cuda::embedding_backward(d_dwte.get(), d_dy.get(), d_tok.get(), N, C, V, nullptr, 0);  // V: the scan
    bytes(d_dwte.download());
    d_big_dwte.upload(F(size_t(big_v) * C, 0.5f));
    lh::cuda::embedding_backward(d_big_dwte.get(), d_dy.get(), d_big_tok.get(), N, C, big_v, sort_scratch.get(), 0);
    bytes(d_big_dwte.download());
    d_dx.upload(dy);
    d_dw.upload(F(C, 0.25f));
    lh::cuda::rmsnorm_backward(d_dx.get(), d_dw.get(), d_dy.get(), d_x.get(), d_w.get(), d_rstd.get(), N, C,
                               scratch.get(), 0);
    bytes(d_dw.download());
    bytes(d_dx.download<uint16_t>());
    // Register path, online path, online path on 16-byte rows; logits = x viewed as [rows, ld].
    // The backward (scalar, then 16-byte) runs in place on a copy, with the forward's lse.
    for (auto [vocab, ld] : {std::pair{257, 257}, std::pair{3001, 3001}, std::pair{3001, 3008}}) {
      const int rows = std::min(int(nc / ld) / 8, N);
      lh::cuda::cross_entropy_forward(d_loss.get(), d_lse.get(), d_x.get(), d_tok.get(), rows, vocab, ld, 0);
      bytes(d_loss.download());
      bytes(d_lse.download());
      d_dx.upload(x);
      lh::cuda::cross_entropy_backward(d_dx.get(), d_dx.get(), d_lse.get(), d_tok.get(), rows, vocab, ld, 0.5f, 0);
      bytes(d_dx.download<uint16_t>());
    }
    lh::cuda::sum_squares(d_ss.get(), d_dwte.get(), size_t(V) * C, scratch.get(), 0);
    bytes(d_ss.download());
    return out;
  };
  const auto first = run_all(), second = run_all();
  REQUIRE(first.size() == second.size());
  for (size_t i = 0; i < first.size(); ++i) {
    INFO("result " << i);
    CHECK(first[i] == second[i]);
  }
}

// cuBLASLt's tuning (cublaslt_tuning.cpp) keeps an algorithm only if bytes_equal says its output
// is the first choice's: a difference anywhere, the odd bytes at the end included, must show.
TEST_CASE("cuda bytes_equal finds a single flipped bit anywhere", "[gpu][cuda_kernels]") {
  LH_SKIP_WITHOUT_GPU();
  const size_t n = 1000003;  // not a multiple of 4
  std::vector<char> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = char(i * 131 % 251);
  DeviceBuffer<char> a(host), b(host);
  DeviceBuffer<int> flag(1);
  CHECK(lh::cuda::bytes_equal(a.get(), b.get(), n, flag.get(), nullptr));
  for (size_t at : {size_t(0), size_t(4096), n / 2, n - 4, n - 1}) {
    std::vector<char> changed = host;
    changed[at] ^= 0x10;
    DeviceBuffer<char> c(changed);
    INFO("flipped byte " << at);
    CHECK_FALSE(lh::cuda::bytes_equal(a.get(), c.get(), n, flag.get(), nullptr));
    CHECK(lh::cuda::bytes_equal(c.get(), c.get(), n, flag.get(), nullptr));
  }
}

// Not a test: `lighthouse_tests "[.bench]"` prints the kernels' achieved bandwidth on the GPU.
TEST_CASE("cuda kernel bandwidth benchmark", "[.bench]") {
  LH_SKIP_WITHOUT_GPU();
  lh::cuda::bench_elementwise_kernels(32768, 1024);
}
