// The CUDA backend's cuBLASLt GEMMs and cuDNN attention against the CPU reference, the whole model
// on both backends, GPU determinism and a short training run. Skipped without a GPU.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cublaslt_matmul.h"
#include "cuda/cudnn_sdpa.h"
#include "cuda/flash_backward.h"
#include "lighthouse/backend.h"
#include "lighthouse/host_io.h"
#include "lighthouse/model.h"
#include "lighthouse/ops/cpu_reference.h"
#include "lighthouse/rng.h"
#include "lighthouse/trainer.h"
#include "support/gpu.h"
#include "support/padded_rows.h"
#include "support/small_run.h"
#include "support/temp_dir.h"

namespace {

// Random values already rounded to bf16, so both backends see identical inputs.
std::vector<double> bf16_values(size_t n, uint64_t seed, double scale = 1.0) {
  lh::Rng rng(seed);
  std::vector<double> v(n);
  for (auto& x : v) x = lh::bf16_to_float(lh::float_to_bf16(float(scale * rng.normal())));
  return v;
}

lh::Buffer upload(lh::Backend& be, lh::DType t, const std::vector<double>& v) {
  lh::Buffer b = be.allocate(t, v.size());
  lh::upload_doubles(be, b.view(), v);
  return b;
}

// ||a - b|| / ||b||: one number per tensor, robust to the few large relative errors of near-zero
// entries that bf16 rounding produces.
double rel_l2(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
  return std::sqrt(num / std::max(den, 1e-300));
}

std::vector<float> as_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// Rows [r0, r1) of every sequence and columns [c0, c1) of a [B, T, W] tensor.
std::vector<double> block(const std::vector<double>& x, int B, int T, size_t W, int r0, int r1, size_t c0, size_t c1) {
  std::vector<double> out;
  for (int b = 0; b < B; ++b)
    for (int r = r0; r < r1; ++r) {
      const auto row = x.begin() + (size_t(b) * T + r) * W;
      out.insert(out.end(), row + c0, row + c1);
    }
  return out;
}

// An attention input gradient [B, T, (H + 2 Hkv) D] against a reference: dQ, dK and dV each on
// its own (a wrong one cannot hide behind the others), over all rows and again over the rows of
// the last 64-token tile alone, whose few keys weigh little in the whole (at T = 257 one key: its
// dK and dV are ~1e-4 of the norm).
void check_qkv_parts(const std::vector<double>& got, const std::vector<double>& want, int B, int T, int H, int Hkv,
                     int D, double tol) {
  REQUIRE(got.size() == want.size());
  const size_t W = size_t(H + 2 * Hkv) * D, bounds[4] = {0, size_t(H) * D, size_t(H + Hkv) * D, W};
  const int last_tile = (T - 1) / 64 * 64;
  for (int part = 0; part < 3; ++part)
    for (const int r0 : {0, last_tile}) {
      CAPTURE(part, r0, T);  // part 0 = dQ, 1 = dK, 2 = dV; rows from r0 on
      CHECK(rel_l2(block(got, B, T, W, r0, T, bounds[part], bounds[part + 1]),
                   block(want, B, T, W, r0, T, bounds[part], bounds[part + 1])) < tol);
    }
}

// Random bf16 GEMM operands x [N, IC], w [OC, IC], dout [N, OC] on the GPU, and the CPU
// reference's out = x w^T, dx = dout w and dw = dw0 + dout^T x.
// Output buffers gout, gdx and gdw (holding dw0, which dW accumulates onto) come with them.
struct GemmCase {
  lh::Buffer x, w, dout, gout, gdx, gdw;
  std::vector<float> out, dx, dw;
};
GemmCase gemm_case(lh::Backend& gpu, int N, int IC, int OC, uint64_t seed, float dw0) {
  const auto x = bf16_values(size_t(N) * IC, seed), w = bf16_values(size_t(OC) * IC, seed + 1, 0.1),
             dout = bf16_values(size_t(N) * OC, seed + 2);
  GemmCase c{upload(gpu, lh::DType::BF16, x),
             upload(gpu, lh::DType::BF16, w),
             upload(gpu, lh::DType::BF16, dout),
             gpu.allocate(lh::DType::BF16, size_t(N) * OC),
             gpu.allocate(lh::DType::BF16, size_t(N) * IC),
             upload(gpu, lh::DType::F32, std::vector<double>(size_t(OC) * IC, dw0)),
             std::vector<float>(size_t(N) * OC),
             std::vector<float>(size_t(N) * IC),
             std::vector<float>(size_t(OC) * IC, dw0)};
  const auto fx = as_float(x), fw = as_float(w), fd = as_float(dout);
  lh::cpu::matmul_forward(c.out.data(), fx.data(), fw.data(), N, IC, OC, OC);
  lh::cpu::matmul_backward(c.dx.data(), c.dw.data(), fd.data(), fx.data(), fw.data(), N, IC, OC, OC);
  return c;
}
// bf16 outputs: one rounding of the fp32 result, ~2^-8 relative; fp32 dW: accumulation order only.
void check_gemm_outputs(lh::Backend& gpu, const GemmCase& c) {
  auto rel = [&](const lh::Buffer& got, const std::vector<float>& want) {
    return rel_l2(lh::download_doubles(gpu, got.view()), {want.begin(), want.end()});
  };
  CHECK(rel(c.gout, c.out) < 1e-2);
  CHECK(rel(c.gdx, c.dx) < 1e-2);
  CHECK(rel(c.gdw, c.dw) < 1e-5);
}

// The GPU's attention output, log-sum-exp and input gradient against the CPU reference on the
// same (bf16-representable) inputs. bf16 P and dS inside the fused kernel: ~1e-2 relative; the
// fp32 log-sum-exp much tighter.
void check_attention_against_cpu(lh::Backend& gpu, const std::vector<double>& qkv, const std::vector<double>& dout,
                                 const lh::Buffer& out, const lh::Buffer& lse, const lh::Buffer& dqkv, int B, int T,
                                 int H, int Hkv, int D) {
  auto fq = as_float(qkv), fdo = as_float(dout);
  std::vector<float> o(fdo.size()), l(size_t(B) * H * T), dq(fq.size());
  lh::cpu::attention_forward(o.data(), l.data(), fq.data(), B, T, H, Hkv, D);
  lh::cpu::attention_backward(dq.data(), fdo.data(), fq.data(), o.data(), l.data(), B, T, H, Hkv, D);
  CHECK(rel_l2(lh::download_doubles(gpu, out.view()), {o.begin(), o.end()}) < 1e-2);
  CHECK(rel_l2(lh::download_doubles(gpu, lse.view()), {l.begin(), l.end()}) < 1e-4);
  check_qkv_parts(lh::download_doubles(gpu, dqkv.view()), {dq.begin(), dq.end()}, B, T, H, Hkv, D, 2e-2);
}

// The backend's attention forward and backward on random inputs, checked as above.
void check_backend_attention(lh::Backend& gpu, int B, int T, int H, int Hkv, int D, uint64_t seed) {
  const size_t W = size_t(H + 2 * Hkv) * D, n_qkv = size_t(B) * T * W, n_out = size_t(B) * T * H * D;
  const auto qkv = bf16_values(n_qkv, seed), dout = bf16_values(n_out, seed + 1);
  auto gq = upload(gpu, lh::DType::BF16, qkv), gdo = upload(gpu, lh::DType::BF16, dout);
  auto go = gpu.allocate(lh::DType::BF16, n_out), glse = gpu.allocate(lh::DType::F32, size_t(B) * H * T);
  auto gdq = gpu.allocate(lh::DType::BF16, n_qkv);
  gpu.attention_forward(go.view(), glse.view(), gq.view(), B, T, H, Hkv, D);
  gpu.attention_backward(gdq.view(), gdo.view(), gq.view(), go.view(), glse.view(), B, T, H, Hkv, D);
  check_attention_against_cpu(gpu, qkv, dout, go, glse, gdq, B, T, H, Hkv, D);
}

}  // namespace

TEST_CASE("cuda: cuBLASLt matmul forward and backward match the CPU reference", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const int N = 300, IC = 136, OC = 264;
  const GemmCase c = gemm_case(*gpu, N, IC, OC, 1, 0.5f);
  gpu->matmul_forward(c.gout.view(), c.x.view(), c.w.view(), N, IC, OC, OC);
  gpu->matmul_backward(c.gdx.view(), c.gdw.view(), c.dout.view(), c.x.view(), c.w.view(), N, IC, OC, OC);
  check_gemm_outputs(*gpu, c);
}

// The output layer with an odd vocabulary: logits rows padded to 16 bytes (ModelConfig::
// logits_row_stride); the backend runs its forward and dx GEMMs at OC = ld on a weight padded with
// zero rows. The padding starts as NaN, which would poison any result that read it before the
// forward overwrote it with zeros.
TEST_CASE("cuda: the output layer's GEMMs and cross-entropy on padded rows match the CPU reference", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const int N = 300, C = 136, V = 257, ld = 264;
  const auto x = bf16_values(size_t(N) * C, 31), w = bf16_values(size_t(V) * C, 32, 0.1);
  auto gx = upload(*gpu, lh::DType::BF16, x), gw = upload(*gpu, lh::DType::BF16, w);
  auto glogits = upload(*gpu, lh::DType::BF16, std::vector<double>(size_t(N) * ld, std::nan("")));
  // The [N, V] part of a padded [N, ld] download; CHECKs that the padding holds zeros.
  auto unpadded = [&](const lh::Buffer& b) {
    auto u = lh::testing::unpad_rows(lh::download_doubles(*gpu, b.view()), N, V, ld);
    CHECK(u.nonzero_padding == 0);
    return u.values;
  };
  {  // Leave ones where the padded weight's zero rows will go: a missing zero fill would show.
    const int wider = 300;
    auto ones = upload(*gpu, lh::DType::BF16, std::vector<double>(size_t(wider) * C, 1.0));
    auto out = gpu->allocate(lh::DType::BF16, size_t(N) * (wider + 4));
    gpu->matmul_forward(out.view(), gx.view(), ones.view(), N, C, wider, wider + 4);
  }
  const auto fx = as_float(x), fw = as_float(w);
  std::vector<float> logits_ref(size_t(N) * V);
  lh::cpu::matmul_forward(logits_ref.data(), fx.data(), fw.data(), N, C, V, V);
  gpu->matmul_forward(glogits.view(), gx.view(), gw.view(), N, C, V, ld);
  const std::vector<double> logits = unpadded(glogits);
  CHECK(rel_l2(logits, {logits_ref.begin(), logits_ref.end()}) < 1e-2);  // one bf16 rounding

  // Cross-entropy on the GPU's own (bf16) logits: the CPU sees the same values.
  lh::Rng rng(33);
  std::vector<int32_t> targets(N);
  for (auto& t : targets) t = int32_t(rng.below(V));
  auto gtargets = gpu->allocate(lh::DType::I32, size_t(N)), glosses = gpu->allocate(lh::DType::F32, size_t(N));
  auto glse = gpu->allocate(lh::DType::F32, size_t(N));
  gpu->copy_from_host(gtargets.view(), targets.data());
  const auto fl = as_float(logits);
  const double dloss = 1.0 / N;
  std::vector<float> losses_ref(N), lse_ref(N), dlogits_ref(fl.size());
  lh::cpu::cross_entropy_forward(losses_ref.data(), lse_ref.data(), fl.data(), targets.data(), N, V, V);
  lh::cpu::cross_entropy_backward(dlogits_ref.data(), fl.data(), lse_ref.data(), targets.data(), N, V, V, dloss);
  gpu->cross_entropy_forward(glosses.view(), glse.view(), glogits.view(), gtargets.view(), N, V, ld);
  std::vector<double> nan_padding = lh::download_doubles(*gpu, glogits.view());  // the backward must zero it
  for (size_t n = 0; n < size_t(N); ++n) std::fill_n(&nan_padding[n * ld + V], ld - V, std::nan(""));
  lh::upload_doubles(*gpu, glogits.view(), nan_padding);
  gpu->cross_entropy_backward(glogits.view(), glogits.view(), glse.view(), gtargets.view(), N, V, ld,
                              dloss);  // in place
  CHECK(rel_l2(lh::download_doubles(*gpu, glosses.view()), {losses_ref.begin(), losses_ref.end()}) < 1e-5);
  CHECK(rel_l2(lh::download_doubles(*gpu, glse.view()), {lse_ref.begin(), lse_ref.end()}) < 1e-5);
  const std::vector<double> dlogits = unpadded(glogits);
  CHECK(rel_l2(dlogits, {dlogits_ref.begin(), dlogits_ref.end()}) < 1e-2);

  // Backward from the padded dlogits, against the CPU on the GPU's dlogits values.
  const auto fd = as_float(dlogits);
  std::vector<float> dx_ref(size_t(N) * C), dw_ref(size_t(V) * C, 0.0f);
  lh::cpu::matmul_backward(dx_ref.data(), dw_ref.data(), fd.data(), fx.data(), fw.data(), N, C, V, V);
  auto gdx = gpu->allocate(lh::DType::BF16, size_t(N) * C), gdw = gpu->allocate(lh::DType::F32, size_t(V) * C);
  gpu->matmul_backward(gdx.view(), gdw.view(), glogits.view(), gx.view(), gw.view(), N, C, V, ld);
  CHECK(rel_l2(lh::download_doubles(*gpu, gdx.view()), {dx_ref.begin(), dx_ref.end()}) < 1e-2);
  CHECK(rel_l2(lh::download_doubles(*gpu, gdw.view()), {dw_ref.begin(), dw_ref.end()}) < 1e-5);
}

// recompute auto sizes activations from allocatable_bytes(): the output layer's padded weight copy
// must be taken before that, not on the first forward.
TEST_CASE("cuda: prepare_matmul takes the padded output layer's scratch up front", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const int C = 1024, V = 50257, ld = 50264;
  const size_t before = gpu->allocatable_bytes();
  gpu->prepare_matmul(C, V, V);  // no padding: nothing to take
  CHECK(gpu->allocatable_bytes() == before);
  gpu->prepare_matmul(C, V, ld);
  const size_t after = gpu->allocatable_bytes();
  REQUIRE(after < before);
  CHECK(before - after >= size_t(ld) * C * 2);  // bf16 rows
}

// `bench gemm --candidates` runs the cuBLASLt heuristic's other algorithms: each must compute the
// same products, and a rank past the heuristic's list must be refused, not silently replaced.
TEST_CASE("cuda: cuBLASLt's other heuristic candidates compute the same GEMMs", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const int N = 1024, IC = 512, OC = 768;
  const GemmCase c = gemm_case(*gpu, N, IC, OC, 7, 0.0f);
  auto bf = [](const lh::Buffer& b) { return static_cast<__nv_bfloat16*>(b.view().data); };
  lh::cuda::CublasLtMatmul mm;
  CHECK(mm.last_algorithm() == "none");
  std::vector<std::string> algorithms;
  for (int rank = 0; rank < 4; ++rank) {
    mm.set_algorithm_choice(rank);
    gpu->fill_zero(c.gdw.view());
    gpu->synchronize();
    auto *xp = bf(c.x), *wp = bf(c.w), *dp = bf(c.dout);
    try {
      mm.forward(bf(c.gout), xp, wp, N, IC, OC, OC, nullptr);
    } catch (const std::out_of_range&) {
      break;  // fewer candidates for this shape
    }
    const std::string algorithm = mm.last_algorithm();  // "rank r: config ..."
    CHECK(algorithm.rfind("rank " + std::to_string(rank) + ":", 0) == 0);
    algorithms.push_back(algorithm.substr(algorithm.find(':')));
    mm.backward_input(bf(c.gdx), dp, wp, N, IC, OC, OC, nullptr);
    mm.backward_weight(c.gdw.view().as<float>(), dp, xp, N, IC, OC, OC, nullptr);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);  // the GEMMs ran on the legacy default stream
    INFO("rank " << rank << algorithms.back());
    check_gemm_outputs(*gpu, c);
  }
  // The shape has several candidates, and the ranks really are other algorithms.
  REQUIRE(algorithms.size() >= 2);
  CHECK(std::count(algorithms.begin(), algorithms.end(), algorithms[0]) == 1);
  mm.set_algorithm_choice(100000);
  CHECK_THROWS_AS(mm.forward(bf(c.gout), bf(c.x), bf(c.w), N, IC, OC, OC, nullptr), std::out_of_range);
  CHECK_THROWS_AS(mm.set_algorithm_choice(-2), std::invalid_argument);
}

// Training tunes each GEMM shape on its first call's operands, among the candidates that reduce as
// the heuristic's first choice does and match its bits there (kernels/cuda/cublaslt_tuning.cpp).
// What that relies on: a candidate that matches on one set of operands matches on any other. Both
// that premise (candidate by candidate) and the tuned GEMMs themselves are checked on fresh operands.
TEST_CASE("cuda: tuned GEMMs give the heuristic's first choice's bits on other operands too", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const int N = 4096, IC = 1024, OC = 3072;  // the 270M model's qkv shape, at fewer tokens
  struct Operands {
    lh::Buffer x, w, dout, residual;
  };
  auto operands = [&](uint64_t seed) {
    return Operands{upload(*gpu, lh::DType::BF16, bf16_values(size_t(N) * IC, seed)),
                    upload(*gpu, lh::DType::BF16, bf16_values(size_t(OC) * IC, seed + 1, 0.05)),
                    upload(*gpu, lh::DType::BF16, bf16_values(size_t(N) * OC, seed + 2)),
                    upload(*gpu, lh::DType::BF16, bf16_values(size_t(N) * OC, seed + 3))};
  };
  const Operands first_ops = operands(10), other_ops = operands(20);
  auto bf = [](const lh::Buffer& b) { return static_cast<__nv_bfloat16*>(b.view().data); };
  auto out = gpu->allocate(lh::DType::BF16, size_t(N) * OC), dx = gpu->allocate(lh::DType::BF16, size_t(N) * IC);
  auto dw = gpu->allocate(lh::DType::F32, size_t(OC) * IC);
  // The four GEMMs of the model on one operand set: outputs and the algorithm each ran.
  struct Results {
    std::vector<std::vector<double>> outputs;
    std::vector<std::string> algorithms, tunings;
  };
  auto run_all = [&](lh::cuda::CublasLtMatmul& mm, const Operands& o) {
    Results r;
    auto keep = [&](const lh::Buffer& b) {
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);  // the GEMMs ran on the legacy default stream
      r.outputs.push_back(lh::download_doubles(*gpu, b.view()));
      const std::string algorithm = mm.last_algorithm();  // "rank r: config ..."
      r.algorithms.push_back(algorithm.substr(algorithm.find(':')));
      r.tunings.push_back(mm.last_tuning());
    };
    mm.forward(bf(out), bf(o.x), bf(o.w), N, IC, OC, OC, nullptr);
    keep(out);
    mm.forward_residual(bf(out), bf(o.x), bf(o.w), bf(o.residual), N, IC, OC, nullptr);
    keep(out);
    mm.backward_input(bf(dx), bf(o.dout), bf(o.w), N, IC, OC, OC, nullptr);
    keep(dx);
    gpu->fill_zero(dw.view());
    gpu->synchronize();
    mm.backward_weight(dw.view().as<float>(), bf(o.dout), bf(o.x), N, IC, OC, OC, nullptr);
    keep(dw);
    return r;
  };
  lh::cuda::CublasLtMatmul first;
  first.set_algorithm_choice(0);
  const Results first_on_first = run_all(first, first_ops), first_on_other = run_all(first, other_ops);
  CHECK(first_on_first.outputs != first_on_other.outputs);  // the operand sets really differ

  SECTION("every candidate that matches on one operand set matches on the other") {
    int matched = 0;
    auto reduction = [](const std::string& algorithm) {
      return algorithm.substr(algorithm.find("split-k"), algorithm.find(')') - algorithm.find("split-k"));
    };
    for (int rank = 1; rank < lh::cuda::CublasLtMatmul::kTuneCandidates; ++rank) {
      lh::cuda::CublasLtMatmul mm;
      mm.set_algorithm_choice(rank);
      Results on_first, on_other;
      try {
        on_first = run_all(mm, first_ops);
        on_other = run_all(mm, other_ops);
      } catch (const std::exception&) {
        continue;  // no candidate of this rank for some shape, or it does not run
      }
      for (size_t g = 0; g < on_first.outputs.size(); ++g) {
        if (reduction(on_first.algorithms[g]) != reduction(first_on_first.algorithms[g]) ||
            on_first.outputs[g] != first_on_first.outputs[g])
          continue;  // not eligible
        ++matched;
        INFO("GEMM " << g << ", rank " << rank << on_first.algorithms[g]);
        CHECK(on_other.outputs[g] == first_on_other.outputs[g]);
      }
    }
    CHECK(matched > 0);  // some candidates were eligible: the check above ran
  }
  SECTION("GEMMs tuned on one operand set give the first choice's bits on the other") {
    lh::cuda::CublasLtMatmul tuned;  // kTuned unless LH_CUBLASLT_TUNE=0
    tuned.set_algorithm_choice(lh::cuda::CublasLtMatmul::kTuned);
    const Results tuned_on_first = run_all(tuned, first_ops);
    for (const std::string& t : tuned_on_first.tunings) {
      INFO(t);
      CHECK(t.find("chose rank") != std::string::npos);  // each shape was really tuned
    }
    const Results tuned_on_other = run_all(tuned, other_ops);  // plans from the first set
    CHECK(tuned_on_first.outputs == first_on_first.outputs);
    CHECK(tuned_on_other.outputs == first_on_other.outputs);
    if (tuned_on_first.algorithms == first_on_first.algorithms)
      WARN("tuning kept the first choice for every GEMM here: the comparison above was trivially true");
    CHECK(first_on_first.tunings[0] == "not tuned");
  }
}

TEST_CASE("cuda: the GEMM with the residual in its epilogue matches the CPU reference", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const int N = 300, IC = 136, OC = 264;
  const auto x = bf16_values(size_t(N) * IC, 4), w = bf16_values(size_t(OC) * IC, 5, 0.1),
             residual = bf16_values(size_t(N) * OC, 6, 3.0);  // larger than the product: the add matters
  auto gx = upload(*gpu, lh::DType::BF16, x), gw = upload(*gpu, lh::DType::BF16, w),
       gr = upload(*gpu, lh::DType::BF16, residual);
  auto gout = gpu->allocate(lh::DType::BF16, size_t(N) * OC);
  gpu->matmul_forward_residual(gout.view(), gx.view(), gw.view(), gr.view(), N, IC, OC);

  auto fx = as_float(x), fw = as_float(w), fr = as_float(residual);
  std::vector<float> product(size_t(N) * OC), out(size_t(N) * OC);
  lh::cpu::matmul_forward(product.data(), fx.data(), fw.data(), N, IC, OC, OC);
  lh::cpu::residual_forward(out.data(), product.data(), fr.data(), out.size());
  // One bf16 rounding of the fp32 sum: ~2^-8 relative.
  const auto got = lh::download_doubles(*gpu, gout.view());
  CHECK(rel_l2(got, {out.begin(), out.end()}) < 1e-2);
  // The residual is really added: without it the result would be off by ~3x the product's size.
  CHECK(rel_l2(got, {product.begin(), product.end()}) > 1.0);
}

TEST_CASE("cuda: cuDNN attention forward and backward match the CPU reference (GQA, odd lengths)", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  struct Shape { int B, T, H, Hkv, D; };
  const Shape shape = GENERATE(Shape{2, 128, 4, 4, 64}, Shape{1, 100, 8, 2, 128}, Shape{2, 1000, 4, 1, 64},
                               Shape{1, 257, 2, 2, 128});
  const auto [B, T, H, Hkv, D] = shape;
  CAPTURE(B, T, H, Hkv, D);
  check_backend_attention(*gpu, B, T, H, Hkv, D, 10);
}

namespace {
lh::ModelConfig small_model() {
  lh::ModelConfig m;
  m.dim = 128, m.n_layers = 2, m.n_heads = 2, m.n_kv_heads = 1, m.ffn_hidden = 320, m.vocab_size = 257;
  m.max_seq_len = 192;
  return m;
}
}  // namespace

TEST_CASE("cuda: whole-model loss and gradients match the CPU reference, deterministically", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  auto cpu = lh::make_cpu_backend();
  const lh::ModelConfig cfg = small_model();
  lh::LlamaModel gm(cfg, *gpu), cm(cfg, *cpu);
  gm.init_weights(5);
  // The CPU model starts from the bf16-rounded weights the GPU computes with.
  const auto w = lh::download_doubles(*gpu, gm.compute_copy());
  lh::upload_doubles(*cpu, cm.params(), w);
  for (auto* m : {&gm, &cm}) m->set_attention(lh::make_attention(lh::AttentionPhase{}, cfg));
  const int B = 2, T = 192;
  lh::Rng rng(9);
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (auto& t : tok) t = int32_t(rng.below(cfg.vocab_size));
  for (auto& t : tgt) t = int32_t(rng.below(cfg.vocab_size));

  gm.zero_grads();
  cm.zero_grads();
  const double gl = gm.forward(tok.data(), tgt.data(), B, T), cl = cm.forward(tok.data(), tgt.data(), B, T);
  gm.backward();
  cm.backward();
  CHECK(gl == Approx(cl).epsilon(5e-3));
  const auto gg = lh::download_doubles(*gpu, gm.grads()), cg = lh::download_doubles(*cpu, cm.grads());
  for (const auto& e : gm.layout().entries()) {
    const std::vector<double> a(gg.begin() + e.offset, gg.begin() + e.offset + e.numel);
    const std::vector<double> b(cg.begin() + e.offset, cg.begin() + e.offset + e.numel);
    INFO(e.name);
    const double err = rel_l2(a, b);
    std::printf("[gpu-err] model gradient %-22s %.3g\n", e.name.c_str(), err);
    CHECK(err < 2e-2);  // bf16 activations through two layers of backward (measured 0.4-0.7%, H200)
  }
  // Same inputs again: bit-identical gradients, with every recompute mode and a per-layer mix too.
  using lh::Recompute;
  const std::vector<std::vector<Recompute>> layouts = {
      {Recompute::kNone, Recompute::kNone}, {Recompute::kFull, Recompute::kFull},
      {Recompute::kSelective, Recompute::kSelective}, {Recompute::kFull, Recompute::kSelective},
      {Recompute::kNone, Recompute::kFull}};
  REQUIRE(cfg.n_layers == 2);
  for (const auto& modes : layouts) {
    gm.set_recompute(modes);
    gm.zero_grads();
    CHECK(gm.forward(tok.data(), tgt.data(), B, T) == gl);
    INFO("recompute " << gm.recompute_summary());
    gm.backward();
    CHECK(lh::download_doubles(*gpu, gm.grads()) == gg);
  }
}

TEST_CASE("cuda: a short GPU run follows the CPU loss curve, and GPU runs and resumes are bit-exact", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  lh::testing::TempDir cpu_dir, gpu_dir, gpu_again, gpu_split;
  const int N = 10;
  auto cpu = lh::make_cpu_backend();
  lh::train(lh::testing::small_run(cpu_dir.path(), N, "cpu"), *cpu, {false, true});
  auto gpu = lh::make_cuda_backend();
  lh::train(lh::testing::small_run(gpu_dir.path(), N, "cuda"), *gpu, {false, true});
  lh::train(lh::testing::small_run(gpu_again.path(), N, "cuda"), *gpu, {false, true});
  const lh::Config split = lh::testing::small_run(gpu_split.path(), N, "cuda");
  lh::TrainOptions half{false, true};
  half.stop_at_step = N / 2;
  lh::train(split, *gpu, half);
  lh::train(split, *gpu, {true, true});

  const auto c = lh::testing::losses_in(cpu_dir.path() / "run/metrics.jsonl");
  const auto g = lh::testing::losses_in(gpu_dir.path() / "run/metrics.jsonl");
  REQUIRE(c.size() == size_t(N));
  REQUIRE(g.size() == size_t(N));
  for (int i = 0; i < N; ++i) {
    INFO("step " << i + 1 << ": cpu " << c[i] << " gpu " << g[i]);
    CHECK(std::abs(c[i] - g[i]) < 0.02 * c[i]);  // bf16 activations: ~1% of the loss
  }
  // The loss level alone is close to ln(vocab) for any model this young: the decrease and the
  // gradient norms are what show the backward and the optimizer at work.
  const auto cn = lh::testing::values_in(cpu_dir.path() / "run/metrics.jsonl", "grad_norm");
  const auto gn = lh::testing::values_in(gpu_dir.path() / "run/metrics.jsonl", "grad_norm");
  REQUIRE(cn.size() == size_t(N));
  REQUIRE(gn.size() == size_t(N));
  std::printf("[gpu-err] train loss decrease cpu %.4f gpu %.4f\n", c[0] - c[N - 1], g[0] - g[N - 1]);
  CHECK(c[0] - c[N - 1] > 0.05);
  CHECK(std::abs((g[0] - g[N - 1]) - (c[0] - c[N - 1])) < 0.1 * (c[0] - c[N - 1]));
  for (int i = 0; i < N; ++i) {
    INFO("step " << i + 1 << ": grad_norm cpu " << cn[i] << " gpu " << gn[i]);
    std::printf("[gpu-err] train grad_norm step %d cpu %.5g gpu %.5g\n", i + 1, cn[i], gn[i]);
    CHECK(std::abs(cn[i] - gn[i]) < 0.05 * cn[i]);
  }
  CHECK(lh::testing::losses_in(gpu_again.path() / "run/metrics.jsonl") == g);
  CHECK(lh::testing::losses_in(gpu_split.path() / "run/metrics.jsonl") == g);
  const std::string last = "run/step_00000010/model.safetensors";
  CHECK(lh::testing::file_bytes(gpu_dir.path() / last) == lh::testing::file_bytes(gpu_split.path() / last));
  // A GPU run's records also say what the clock and power did (NVML is on the GPU machine), each
  // over the stretch since the previous record that carried them.
  auto records_with_clock = [](const std::filesystem::path& p) {
    std::ifstream f(p);
    int n = 0;
    for (std::string line; std::getline(f, line);) {
      const nlohmann::json r = nlohmann::json::parse(line);
      if (!r.contains("sm_clock_mhz")) continue;
      ++n;
      CHECK(r.at("sm_clock_mhz").get<double>() > 0);
      CHECK(r.at("clock_samples").get<int>() > 0);
    }
    return n;
  };
  // The sampler reads every 100 ms and a record needs two readings, so this takes a run of about a
  // second (the 10 steps above take a few ms each once their cuDNN plans are built, which the
  // memory check before step 1 now does).
  lh::testing::TempDir timed_dir;
  lh::Config timed = lh::testing::small_run(timed_dir.path(), 300, "cuda");
  timed.logging.interval = 100, timed.training.eval_interval = 0, timed.training.checkpoint_interval = 0;
  lh::train(timed, *gpu, {false, true});
  CHECK(records_with_clock(timed_dir.path() / "run/metrics.jsonl") > 0);
  CHECK(records_with_clock(cpu_dir.path() / "run/metrics.jsonl") == 0);
}

TEST_CASE("cuda: a traced training run writes its trace and loses no bits", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  lh::testing::TempDir plain_dir, traced_dir;
  const int N = 6;
  auto gpu = lh::make_cuda_backend();
  lh::train(lh::testing::small_run(plain_dir.path(), N, "cuda"), *gpu, {false, true});
  lh::TrainOptions traced{false, true};
  traced.trace_path = (traced_dir.path() / "trace.json").string();
  traced.trace_from = 2, traced.trace_steps = 3;
  lh::train(lh::testing::small_run(traced_dir.path(), N, "cuda"), *gpu, traced);
  CHECK(lh::testing::losses_in(traced_dir.path() / "run/metrics.jsonl") ==
        lh::testing::losses_in(plain_dir.path() / "run/metrics.jsonl"));
  std::ifstream f(traced.trace_path);
  const nlohmann::json trace = nlohmann::json::parse(f);
  // Three steps of a 2-layer model: dozens of kernels each.
  CHECK(trace.at("traceEvents").size() > 3 * 20);
}

namespace {
// CudnnSdpa under a workspace limit on the fused qkv layout: forward, deterministic backward;
// returns out, lse and dqkv as doubles (the gpu backend only provides memory and transfers).
struct SdpaRun {
  std::vector<double> out, lse, dqkv;
};
SdpaRun run_sdpa(lh::Backend& gpu, lh::cuda::CudnnSdpa& sdpa, const std::vector<double>& qkv,
                 const std::vector<double>& dout, int B, int T, int H, int Hkv, int D) {
  auto gq = upload(gpu, lh::DType::BF16, qkv), gdo = upload(gpu, lh::DType::BF16, dout);
  auto go = gpu.allocate(lh::DType::BF16, dout.size()), glse = gpu.allocate(lh::DType::F32, size_t(B) * H * T);
  auto gdq = gpu.allocate(lh::DType::BF16, qkv.size());
  const auto shape = lh::cuda::fused_qkv_shape(B, T, H, Hkv, D);
  using bf = __nv_bfloat16;
  const bf* q = static_cast<const bf*>(gq.view().data);
  bf* dq = static_cast<bf*>(gdq.view().data);
  const int64_t ko = lh::cuda::fused_k_offset(H, D), vo = lh::cuda::fused_v_offset(H, Hkv, D);
  const float scale = 1.0f / std::sqrt(float(D));
  sdpa.forward(shape, q, q + ko, q + vo, static_cast<bf*>(go.view().data), glse.view().as<float>(), scale, nullptr);
  sdpa.backward(shape, q, q + ko, q + vo, static_cast<const bf*>(go.view().data),
                static_cast<const bf*>(gdo.view().data), glse.view().as<float>(), dq, dq + ko, dq + vo, scale, nullptr);
  cudaDeviceSynchronize();
  return {lh::download_doubles(gpu, go.view()), lh::download_doubles(gpu, glse.view()),
          lh::download_doubles(gpu, gdq.view())};
}
}  // namespace

TEST_CASE("cuda: attention over the workspace limit (kv-head groups, key chunks) matches the CPU reference",
          "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  struct Shape { int B, T, H, Hkv, D; };
  // 1000 = 7 key chunks of 128 and a ragged one of 104; GQA inside each chunk's call; Hkv = 4:
  // groups of two kv heads just under one call's workspace.
  const Shape shape = GENERATE(Shape{2, 200, 4, 2, 64}, Shape{2, 1000, 4, 2, 128}, Shape{1, 700, 2, 1, 64},
                               Shape{1, 300, 8, 4, 64});
  const auto [B, T, H, Hkv, D] = shape;
  CAPTURE(B, T, H, Hkv, D);
  const size_t n_qkv = size_t(B) * T * (H + 2 * Hkv) * D, n_out = size_t(B) * T * H * D;
  const auto qkv = bf16_values(n_qkv, 20), dout = bf16_values(n_out, 21);
  auto gpu = lh::make_cuda_backend();
  lh::cuda::CudnnSdpa sdpa;
  sdpa.set_workspace_limit(size_t(1) << 40);
  const size_t whole = sdpa.prepare(lh::cuda::fused_qkv_shape(B, T, H, Hkv, D));
  const SdpaRun one_call = run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D);
  // Just under one call's workspace: the largest kv-head groups under it where there are several
  // kv heads (else key chunks); then no workspace at all: single kv heads in key chunks of one
  // tile (128 keys).
  for (const size_t limit : {whole - 1, size_t(0)}) {
    CAPTURE(whole, limit);
    sdpa.set_workspace_limit(limit);
    const SdpaRun split = run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D);
    // The forward splits into whole heads only: same bits. The backward agrees within bf16
    // rounding (key chunks round each dQ partial to bf16 once more) ...
    CHECK(split.out == one_call.out);
    CHECK(split.lse == one_call.lse);
    check_qkv_parts(split.dqkv, one_call.dqkv, B, T, H, Hkv, D, 1e-2);
    // ... and is reproducible bit for bit.
    CHECK(run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D).dqkv == split.dqkv);
  }
  auto fq = as_float(qkv), fdo = as_float(dout);
  std::vector<float> o(fdo.size()), l(size_t(B) * H * T), dq(fq.size());
  lh::cpu::attention_forward(o.data(), l.data(), fq.data(), B, T, H, Hkv, D);
  lh::cpu::attention_backward(dq.data(), fdo.data(), fq.data(), o.data(), l.data(), B, T, H, Hkv, D);
  const SdpaRun chunked = run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D);
  CHECK(rel_l2(chunked.out, {o.begin(), o.end()}) < 1e-2);
  check_qkv_parts(chunked.dqkv, {dq.begin(), dq.end()}, B, T, H, Hkv, D, 2e-2);
}

TEST_CASE("cuda: key chunks on Lighthouse's packed [1, BH, S, D] layout agree with one call", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  const int BH = 3, S = 500, D = 64;
  lh::cuda::SdpaShape sh;
  sh.b = 1, sh.hq = BH, sh.hk = BH, sh.s = S, sh.d = D;
  sh.q = {int64_t(BH) * S * D, int64_t(S) * D, D, 1};
  sh.k = sh.v = sh.o = sh.q;
  sh.stats = {int64_t(BH) * S, S, 1, 1};
  const size_t n = size_t(BH) * S * D;
  auto gpu = lh::make_cuda_backend();
  std::vector<lh::Buffer> in;  // q, k, v, dout
  for (uint64_t seed = 40; seed < 44; ++seed) in.push_back(upload(*gpu, lh::DType::BF16, bf16_values(n, seed)));
  using bf = __nv_bfloat16;
  auto ptr = [](const lh::Buffer& b) { return static_cast<bf*>(b.view().data); };
  // Grads (dq, dk, dv concatenated) of one forward + backward under a workspace limit.
  auto grads = [&](size_t limit) {
    lh::cuda::CudnnSdpa sdpa;
    sdpa.set_workspace_limit(limit);
    auto o = gpu->allocate(lh::DType::BF16, n), lse = gpu->allocate(lh::DType::F32, size_t(BH) * S);
    std::vector<lh::Buffer> d;
    for (int i = 0; i < 3; ++i) d.push_back(gpu->allocate(lh::DType::BF16, n));
    const float scale = 1.0f / std::sqrt(float(D));
    sdpa.forward(sh, ptr(in[0]), ptr(in[1]), ptr(in[2]), ptr(o), lse.view().as<float>(), scale, nullptr);
    sdpa.backward(sh, ptr(in[0]), ptr(in[1]), ptr(in[2]), ptr(o), ptr(in[3]), lse.view().as<float>(), ptr(d[0]),
                  ptr(d[1]), ptr(d[2]), scale, nullptr);
    cudaDeviceSynchronize();
    std::vector<double> all;
    for (const auto& g : d) {
      const auto v = lh::download_doubles(*gpu, g.view());
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const auto one_call = grads(size_t(1) << 40), chunked = grads(0);  // limit 0: one head, 4 chunks
  // dQ, dK and dV each, all rows and the last (ragged) 64 rows of each head: [3 * BH, S, D] rows.
  for (int part = 0; part < 3; ++part)
    for (const int r0 : {0, (S - 1) / 64 * 64}) {
      CAPTURE(part, r0);
      const auto rows = [&](const std::vector<double>& all) {
        const std::vector<double> one(all.begin() + size_t(part) * n, all.begin() + size_t(part + 1) * n);
        return block(one, BH, S, D, r0, S, 0, D);
      };
      CHECK(rel_l2(rows(chunked), rows(one_call)) < 1e-2);
    }
  CHECK(chunked != one_call);  // dQ really went through the chunks (one more bf16 rounding)
  CHECK(grads(0) == chunked);
}

TEST_CASE("cuda: the non-deterministic attention backward also matches the CPU reference", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  gpu->set_deterministic(false);
  check_backend_attention(*gpu, /*B=*/1, /*T=*/300, /*H=*/4, /*Hkv=*/2, /*D=*/128, 30);
}

// compute-sanitizer's initcheck finds cuDNN's GQA backward (its fmha_reduce_head kernel) reading
// workspace bytes that nothing wrote. Results must not depend on them: the same bits whether the
// workspace held zeros, NaNs (0xFF bytes) or huge numbers (0x7F) before each call, for cuDNN's
// deterministic backward (whole calls and key chunks) and, where it runs, ours. The atomic
// backward, whose fp32 dQ accumulator in the workspace must be zeroed after the fill, is not
// reproducible bit for bit: there the gradients must stay finite and close.
TEST_CASE("cuda: attention results do not depend on what the workspace held", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  struct Shape { int B, T, H, Hkv, D; };
  const Shape shape = GENERATE(Shape{2, 192, 2, 1, 64}, Shape{1, 300, 4, 2, 128}, Shape{1, 257, 4, 4, 128});
  const auto [B, T, H, Hkv, D] = shape;
  CAPTURE(B, T, H, Hkv, D);
  const size_t n_qkv = size_t(B) * T * (H + 2 * Hkv) * D, n_out = size_t(B) * T * H * D;
  const auto qkv = bf16_values(n_qkv, 60), dout = bf16_values(n_out, 61);
  auto gpu = lh::make_cuda_backend();
  enum Variant { kCudnn, kKeyChunks, kFlash, kAtomic };
  const char* names[] = {"cuDNN", "cuDNN, key chunks", "flash", "cuDNN atomic"};
  for (Variant variant : {kCudnn, kKeyChunks, kFlash, kAtomic}) {
    INFO("backward: " << names[variant]);
    if (variant == kFlash && D != 128) continue;  // the kernel's only head dim
    if (variant == kFlash && !lh::cuda::flash_backward_supported(lh::cuda::fused_qkv_shape(B, T, H, Hkv, D))) {
      lh::testing::record_skip(Catch::getResultCapture().getCurrentTestName().c_str(),
                               "the flash backward part: needs head dim 128, compute capability 9.0 and sm_90a code");
      continue;
    }
    lh::cuda::CudnnSdpa sdpa;
    sdpa.set_flash_backward(variant == kFlash);
    sdpa.set_deterministic(variant != kAtomic);
    if (variant == kKeyChunks) sdpa.set_workspace_limit(0);  // one kv head per call, in key chunks
    sdpa.set_workspace_fill(0x00);
    const SdpaRun zeros = run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D);
    for (int fill : {0xFF, 0x7F}) {
      INFO("fill byte 0x" << std::hex << fill << std::dec);
      sdpa.set_workspace_fill(fill);
      const SdpaRun filled = run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D);
      CHECK(filled.out == zeros.out);
      CHECK(filled.lse == zeros.lse);
      if (variant == kAtomic) {
        CHECK(std::all_of(filled.dqkv.begin(), filled.dqkv.end(), [](double x) { return std::isfinite(x); }));
        CHECK(rel_l2(filled.dqkv, zeros.dqkv) < 1e-2);  // atomic-order rounding only
      } else {
        CHECK(filled.dqkv == zeros.dqkv);
      }
    }
  }
}

namespace {

// The current device's compute capability as 10 * major + minor.
int compute_capability() {
  int dev = 0, major = 0, minor = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return 10 * major + minor;
}
}  // namespace

TEST_CASE("cuda: the flash attention backward matches the CPU reference and cuDNN, and repeats bit for bit",
          "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  struct Shape { int B, T, H, Hkv; };
  // One key block (100 keys, and 40: less than one query tile); ragged last blocks (257, 1000);
  // 192 = a key block and a half; GQA groups of 4 and 2 and none; several batches; 640 = 5 key
  // blocks whose dQ partials meet in order; 10 (batch, kv head) pairs, more than one group of the
  // launch order (flash_backward.cu: a group has SMs / 16 pairs, 8 on an H100 or H200), the last
  // one short.
  const Shape shape = GENERATE(Shape{1, 100, 8, 2}, Shape{2, 257, 4, 1}, Shape{1, 1000, 4, 4}, Shape{2, 640, 8, 4},
                               Shape{1, 40, 4, 2}, Shape{1, 192, 2, 1}, Shape{5, 300, 4, 2});
  const int D = 128;
  const auto [B, T, H, Hkv] = shape;
  CAPTURE(B, T, H, Hkv);
  // The kernel runs on compute capability 9.0 exactly when the build has sm_90a code; other builds
  // (plain sm_90, an earlier target's PTX) must keep it off, since its body is then a trap.
  const bool supported = lh::cuda::flash_backward_supported(lh::cuda::fused_qkv_shape(B, T, H, Hkv, D));
  if (compute_capability() == 90) CHECK(supported == bool(LH_BUILT_FOR_SM90A));
  if (!supported) {
    lh::testing::record_skip(Catch::getResultCapture().getCurrentTestName().c_str(),
                             "the flash backward needs a Hopper (compute capability 9.0) GPU and sm_90a code");
    return;
  }
  const size_t W = size_t(H + 2 * Hkv) * D, n_qkv = size_t(B) * T * W, n_out = size_t(B) * T * H * D;
  const auto qkv = bf16_values(n_qkv, 40), dout = bf16_values(n_out, 41);
  auto gpu = lh::make_cuda_backend();
  lh::cuda::CudnnSdpa sdpa;
  sdpa.set_flash_backward(false);  // cuDNN's first
  const SdpaRun cudnn = run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D);
  sdpa.set_flash_backward(true);
  const SdpaRun flash = run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D);
  CHECK(flash.out == cudnn.out);  // the forward is cuDNN's either way
  for (int again = 0; again < 3; ++again) CHECK(run_sdpa(*gpu, sdpa, qkv, dout, B, T, H, Hkv, D).dqkv == flash.dqkv);

  auto fq = as_float(qkv), fdo = as_float(dout);
  std::vector<float> o(fdo.size()), l(size_t(B) * H * T), dq(fq.size());
  lh::cpu::attention_forward(o.data(), l.data(), fq.data(), B, T, H, Hkv, D);
  lh::cpu::attention_backward(dq.data(), fdo.data(), fq.data(), o.data(), l.data(), B, T, H, Hkv, D);
  const std::vector<double> ref(dq.begin(), dq.end());
  // bf16 P and dS inside the kernel, as in cuDNN's: ~1e-2 relative.
  check_qkv_parts(flash.dqkv, ref, B, T, H, Hkv, D, 2e-2);
  check_qkv_parts(flash.dqkv, cudnn.dqkv, B, T, H, Hkv, D, 2e-2);
}

// training.attention_backward "auto" is the flash backward from a sequence length on
// (kFlashAutoMinLength); here with a small length, so that both sides of it are cheap to run.
TEST_CASE("cuda: the flash backward from a length on takes exactly the calls at or above it", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  const int H = 4, Hkv = 2, D = 128, from = 256;
  if (!lh::cuda::flash_backward_supported(lh::cuda::fused_qkv_shape(1, 300, H, Hkv, D))) {
    lh::testing::record_skip(Catch::getResultCapture().getCurrentTestName().c_str(),
                             "the flash backward needs a Hopper (compute capability 9.0) GPU and sm_90a code");
    return;
  }
  auto gpu = lh::make_cuda_backend();
  for (int T : {192, 255, 256, 300}) {
    CAPTURE(T);
    const size_t n_qkv = size_t(T) * (H + 2 * Hkv) * D, n_out = size_t(T) * H * D;
    const auto qkv = bf16_values(n_qkv, 70 + T), dout = bf16_values(n_out, 71 + T);
    lh::cuda::CudnnSdpa cudnn, flash, from_length;
    cudnn.set_flash_backward(false);
    flash.set_flash_backward(true);
    from_length.set_flash_backward(true, from);
    const SdpaRun c = run_sdpa(*gpu, cudnn, qkv, dout, 1, T, H, Hkv, D);
    const SdpaRun f = run_sdpa(*gpu, flash, qkv, dout, 1, T, H, Hkv, D);
    REQUIRE(c.dqkv != f.dqkv);  // the two backwards can be told apart by their bits
    CHECK(run_sdpa(*gpu, from_length, qkv, dout, 1, T, H, Hkv, D).dqkv == (T >= from ? f.dqkv : c.dqkv));
    // Memory planning sees the workspace of the backward that will run.
    const auto shape = lh::cuda::fused_qkv_shape(1, T, H, Hkv, D);
    CHECK(from_length.prepare(shape) == (T >= from ? flash : cudnn).prepare(shape));
  }
}

TEST_CASE("cuda: lighthouse -> dense training follows the CPU and resumes bit-exactly across the switch",
          "[gpu][cuda][lighthouse]") {
  LH_SKIP_WITHOUT_GPU();
  lh::testing::TempDir cpu_dir, gpu_dir, gpu_split;
  const int steps = 6, boundary = 3;
  auto cpu = lh::make_cpu_backend();
  lh::train(lh::testing::phased_run(cpu_dir.path(), steps, boundary, "cpu"), *cpu, {false, true});
  auto gpu = lh::make_cuda_backend();
  lh::train(lh::testing::phased_run(gpu_dir.path(), steps, boundary, "cuda"), *gpu, {false, true});
  const lh::Config split = lh::testing::phased_run(gpu_split.path(), steps, boundary, "cuda");
  lh::TrainOptions before{false, true};
  before.stop_at_step = boundary - 1;  // stop inside the Lighthouse phase, resume across the switch
  lh::train(split, *gpu, before);
  lh::train(split, *gpu, {true, true});
  const auto c = lh::testing::losses_in(cpu_dir.path() / "run/metrics.jsonl");
  const auto g = lh::testing::losses_in(gpu_dir.path() / "run/metrics.jsonl");
  REQUIRE(c.size() == size_t(steps));
  REQUIRE(g.size() == size_t(steps));
  for (int i = 0; i < steps; ++i) {
    INFO("step " << i + 1 << ": cpu " << c[i] << " gpu " << g[i]);
    CHECK(std::abs(c[i] - g[i]) < 0.02 * c[i]);
  }
  // Each phase's gradients, not only the loss level (about ln(vocab) this early).
  const auto cn = lh::testing::values_in(cpu_dir.path() / "run/metrics.jsonl", "grad_norm");
  const auto gn = lh::testing::values_in(gpu_dir.path() / "run/metrics.jsonl", "grad_norm");
  REQUIRE(cn.size() == size_t(steps));
  REQUIRE(gn.size() == size_t(steps));
  for (int i = 0; i < steps; ++i) {
    INFO("step " << i + 1 << ": grad_norm cpu " << cn[i] << " gpu " << gn[i]);
    std::printf("[gpu-err] phased grad_norm step %d cpu %.5g gpu %.5g\n", i + 1, cn[i], gn[i]);
    CHECK(std::abs(cn[i] - gn[i]) < 0.05 * cn[i]);
  }
  CHECK(lh::testing::losses_in(gpu_split.path() / "run/metrics.jsonl") == g);
  const std::string last = "run/step_00000006/model.safetensors";
  CHECK(lh::testing::file_bytes(gpu_dir.path() / last) == lh::testing::file_bytes(gpu_split.path() / last));
}

TEST_CASE("cuda: limit_memory (--device-memory) makes the device end at the cap", "[gpu][cuda]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  size_t free_bytes = 0, total_bytes = 0;
  REQUIRE(cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess);
  const size_t GiB = size_t(1) << 30, used = total_bytes - free_bytes;
  gpu->limit_memory(used + 4 * GiB);  // 4 GiB left under the cap
  // Planning sees the cap less its margin of at least 1 GiB (a capped device this small: 1 GiB).
  CHECK(gpu->allocatable_bytes() <= 3 * GiB);
  CHECK(gpu->allocatable_bytes() >= 3 * GiB - 64 * (size_t(1) << 20));
  lh::Buffer fits = gpu->allocate(lh::DType::F32, GiB / 4);  // 1 GiB
  CHECK_THROWS_AS(gpu->allocate(lh::DType::F32, GiB), lh::OutOfMemory);  // 4 GiB more: past the cap
  try {
    gpu->allocate(lh::DType::F32, GiB);
  } catch (const lh::OutOfMemory& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains("--device-memory cap"));
  }
  // cuDNN's workspace limit becomes a quarter of the capped device, as on a card that small: the
  // deterministic backward at 64K (8 GiB of workspace per head uncapped) takes key chunks instead.
  CHECK_NOTHROW(gpu->prepare_attention(1, 65536, 8, 8, 128));
  CHECK(gpu->attention_workspace_bytes() > 0);
  CHECK(gpu->attention_workspace_bytes() <= (used + 4 * GiB) / 4);
}
