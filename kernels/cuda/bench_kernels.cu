// Bandwidth micro-benchmark of the hand-written kernels. Each kernel is charged the bytes it must
// move (every input read once, every output written once, as counted in its file); achieved GB/s
// = bytes / median time over 20 launches after 3 warm-ups, timed with CUDA events. A large
// device-to-device cudaMemcpy (read + write counted) gives the practical ceiling to compare with.
// Inputs are pseudo-random (never zeros). At rows x cols = 32768 x 1024 a bf16 activation is
// 64 MiB, larger than the 50 MB L2, so the numbers are DRAM numbers.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench_support.cuh"
#include "lighthouse/config.h"
#include "lighthouse_kernels.h"

namespace lh::cuda {
namespace {
using bench::alloc_fill;
using bench::hash_uniform;
using bench::time_ms;

__global__ void fill_tokens(int32_t* p, size_t n, int V) {
  for (size_t i = detail::global_thread(); i < n; i += detail::grid_threads())
    p[i] = static_cast<int32_t>((hash_uniform(i, 7) + 1.0f) * 0.5f * V) % V;
}

// N uniform tokens below V on the device.
int32_t* alloc_tokens(int N, int V) {
  int32_t* tok = nullptr;
  LH_CUDA_CHECK(cudaMalloc(&tok, N * sizeof(int32_t)));
  fill_tokens<<<detail::grid_for(N, 256), 256>>>(tok, N, V);
  LH_CUDA_CHECK_LAUNCH();
  return tok;
}

int logits_row_stride(int V) {  // as in training
  ModelConfig m;
  m.vocab_size = V;
  return m.logits_row_stride();
}

// Embedding backward at a byte vocabulary and at GPT-2's and Llama 3's, by both paths (the scan
// only where it finishes in reasonable time); uniform tokens. Bytes: dout once, each vocabulary
// row's fp32 gradient read and written, the tokens.
template <typename Row>
void bench_embedding_backward(Row& row, const bf16* dout, int N, int C) {
  for (int V : {257, 1024, 50257, 128256}) {
    float* dwte = alloc_fill<float>(size_t(V) * C, 15);
    int32_t* tok = alloc_tokens(N, V);
    const size_t scratch_bytes = embedding_backward_scratch_bytes(N, V, EmbeddingBackward::kSorted);
    void* scratch = nullptr;
    LH_CUDA_CHECK(cudaMalloc(&scratch, scratch_bytes));
    const double bytes = 2.0 * N * C + 8.0 * std::min(V, N) * C + 4.0 * N;
    for (auto path : {EmbeddingBackward::kScan, EmbeddingBackward::kSorted}) {
      if (path == EmbeddingBackward::kScan && V > 50257) continue;  // ~0.1 s a call
      const std::string name = std::string("embedding_bwd ") + (path == EmbeddingBackward::kScan ? "scan" : "sorted") +
                               " V=" + std::to_string(V);
      row(name.c_str(), bytes, [&] { embedding_backward(dwte, dout, tok, N, C, V, scratch, 0, path); });
    }
    for (void* q : std::vector<void*>{dwte, tok, scratch}) LH_CUDA_CHECK(cudaFree(q));
  }
}

// Cross-entropy at GPT-2's and Llama 3's vocabularies (the online-softmax path), rows padded as in
// training. Bytes: the forward reads each row once and writes its lse and loss; the backward reads
// each row and its lse once and writes the row (padding included). The backward runs on the
// forward's lse (it is timed after it).
template <typename Row>
void bench_large_vocab_cross_entropy(Row& row, int N) {
  for (int V : {50257, 128256}) {
    const int ld = logits_row_stride(V);
    bf16* logits = alloc_fill<bf16>(size_t(N) * ld, 31, -8.f, 8.f);
    float *losses = alloc_fill<float>(N, 32), *lse = alloc_fill<float>(N, 33);
    int32_t* tok = alloc_tokens(N, V);
    const std::string suffix = " V=" + std::to_string(V);
    row(("cross_entropy_forward" + suffix).c_str(), 2.0 * N * V + 12.0 * N,
        [&] { cross_entropy_forward(losses, lse, logits, tok, N, V, ld, 0); });
    row(("cross_entropy_backward" + suffix).c_str(), 2.0 * N * V + 2.0 * N * ld + 8.0 * N,
        [&] { cross_entropy_backward(logits, logits, lse, tok, N, V, ld, 1.0f / N, 0); });
    for (void* q : std::vector<void*>{logits, losses, lse, tok}) LH_CUDA_CHECK(cudaFree(q));
  }
}

// The Lighthouse kernels of the fused layer path at the paper's shape (N = 98,304, H = Hkv = 8,
// d = 128, L3 p4 k1536), each charged its compulsory bytes.
template <typename Row>
void bench_lighthouse_kernels(Row& row) {
  const lighthouse::Geometry geo{98304, 3, 4, 1536};
  const int H = 8, Hkv = 8, D = 128, HX = H + 2 * Hkv;
  const size_t N = size_t(geo.N), P = size_t(geo.pyramid_size()), qkv_n = N * HX * D;
  const size_t pyr_q = size_t(H) * P * D, pyr_kv = size_t(Hkv) * P * D;
  bf16 *qkv = alloc_fill<bf16>(qkv_n, 30), *dqkv = alloc_fill<bf16>(qkv_n, 31);
  bf16 *qp = alloc_fill<bf16>(pyr_q, 32), *kp = alloc_fill<bf16>(pyr_kv, 33), *vp = alloc_fill<bf16>(pyr_kv, 34);
  float *sq = alloc_fill<float>(size_t(H) * P, 35), *sk = alloc_fill<float>(size_t(Hkv) * P, 36);
  LH_CUDA_CHECK(cudaDeviceSynchronize());
  std::printf("lighthouse kernels, N=%zu H=Hkv=%d d=%d L3 p4:\n", N, H, D);
  const double e = 2.0, coarse = double(P - N) * HX * D * e;
  row("lh coarse pyramid (fused)", qkv_n * e + coarse,
      [&] { lighthouse_coarse_pyramid_forward(qp, kp, vp, qkv, 1, H, Hkv, D, geo, 0); });
  row("lh coarse pyramid + norm scores (fused)", qkv_n * e + coarse + double(P) * (H + Hkv) * sizeof(float),
      [&] { lighthouse_coarse_pyramid_scores_forward(qp, kp, vp, sq, sk, qkv, 1, H, Hkv, D, geo, 0); });
  row("lh coarse pyramid per entry", qkv_n * e * (geo.L - 1) + coarse,
      [&] { lighthouse_coarse_pyramid_per_entry(qp, kp, vp, qkv, 1, H, Hkv, D, geo, 0); });
  row("lh pyramid (all levels)", qkv_n * e * geo.L + (P * HX * D) * e,
      [&] { lighthouse_pyramid_forward(qp, kp, vp, qkv, 1, H, Hkv, D, geo, 0); });
  row("lh norm scores from qkv", double(N) * (H + Hkv) * D * e,
      [&] { lighthouse_norm_scores_qkv(sq, sk, qkv, 1, H, Hkv, D, geo, 0); });
  row("lh pyramid backward", double(P) * HX * D * e + qkv_n * e,
      [&] { lighthouse_pyramid_backward(dqkv, qp, kp, vp, 1, H, Hkv, D, geo, 0); });
  LH_CUDA_CHECK(cudaDeviceSynchronize());
  for (void* q : std::vector<void*>{qkv, dqkv, qp, kp, vp, sq, sk}) LH_CUDA_CHECK(cudaFree(q));
}

}  // namespace

void bench_elementwise_kernels(int rows, int cols) {
  const int N = rows, C = cols, V = 257, D = 64, H = std::max(1, C / D), Hkv = std::max(1, H / 4);
  const int ld = logits_row_stride(V);
  const size_t nc = size_t(N) * C;
  cudaDeviceProp prop{};
  LH_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("kernel bandwidth on %s, N=%d C=%d (bf16 activations), V=%d, rope D=%d H=%d Hkv=%d\n", prop.name, N,
              C, V, D, H, Hkv);

  bf16 *x = alloc_fill<bf16>(nc, 1), *y = alloc_fill<bf16>(nc, 2), *out = alloc_fill<bf16>(nc, 3);
  bf16 *w = alloc_fill<bf16>(C, 4, 0.5f, 1.5f), *wte = alloc_fill<bf16>(size_t(V) * C, 5);
  bf16 *gu = alloc_fill<bf16>(2 * nc, 6, -4.f, 4.f), *dgu = alloc_fill<bf16>(2 * nc, 7);
  const size_t qkv_n = size_t(N) * (H + 2 * Hkv) * D;
  bf16 *qkv = alloc_fill<bf16>(qkv_n, 8), *logits = alloc_fill<bf16>(size_t(N) * ld, 9, -8.f, 8.f);
  bf16 *dlogits = alloc_fill<bf16>(size_t(N) * ld, 10), *copy = alloc_fill<bf16>(nc, 11);
  float *f32 = alloc_fill<float>(nc, 12), *rstd = alloc_fill<float>(N, 13, 0.5f, 2.f);
  float *dw = alloc_fill<float>(C, 14), *dwte = alloc_fill<float>(size_t(V) * C, 15);
  float *p = alloc_fill<float>(nc, 16), *g = alloc_fill<float>(nc, 17, -0.1f, 0.1f);
  float *m = alloc_fill<float>(nc, 18, -0.01f, 0.01f), *v = alloc_fill<float>(nc, 19, 1e-6f, 1e-3f);
  float *table = alloc_fill<float>(size_t(N) * D, 20), *losses = alloc_fill<float>(N, 21),
        *lse = alloc_fill<float>(N, 22);
  int32_t* tok = alloc_tokens(N, V);
  void* scratch = nullptr;
  LH_CUDA_CHECK(cudaMalloc(&scratch, std::max(rmsnorm_backward_scratch_bytes(N, C), sum_squares_scratch_bytes(nc))));
  double* ss = nullptr;
  LH_CUDA_CHECK(cudaMalloc(&ss, sizeof(double)));
  LH_CUDA_CHECK(cudaDeviceSynchronize());

  // Ceiling: a 1 GiB device-to-device copy, bytes read + written.
  const size_t copy_bytes = size_t(1) << 30;
  void *src = nullptr, *dst = nullptr;
  LH_CUDA_CHECK(cudaMalloc(&src, copy_bytes));
  LH_CUDA_CHECK(cudaMalloc(&dst, copy_bytes));
  LH_CUDA_CHECK(cudaMemset(src, 0x3c, copy_bytes));
  const float copy_ms = time_ms([&] { LH_CUDA_CHECK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice)); });
  const double ceiling = 2.0 * copy_bytes / (copy_ms * 1e-3) / 1e9;
  std::printf("%-28s %10s %10s %9s %7s\n", "kernel", "MB moved", "time us", "GB/s", "%copy");
  std::printf("%-28s %10.1f %10.1f %9.0f %7s\n", "cudaMemcpy D2D (1 GiB)", 2.0 * copy_bytes / 1e6, copy_ms * 1e3,
              ceiling, "100");
  LH_CUDA_CHECK(cudaFree(src));
  LH_CUDA_CHECK(cudaFree(dst));

  auto row = [&](const char* name, double bytes, const std::function<void()>& f) {
    const float ms = time_ms(f);
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    std::printf("%-28s %10.1f %10.1f %9.0f %7.0f\n", name, bytes / 1e6, ms * 1e3, gbs, 100.0 * gbs / ceiling);
  };
  const double a = 2.0 * nc;  // bytes of one bf16 [N, C] activation
  row("embedding_forward", 2 * a + 4.0 * N, [&] { embedding_forward(out, tok, wte, N, C, 0); });
  bench_embedding_backward(row, y, N, C);
  row("rmsnorm_forward", 2 * a + 4.0 * N, [&] { rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f, 0); });
  row("rmsnorm_backward", 4 * a + 4.0 * N,
      [&] { rmsnorm_backward(out, dw, y, x, w, rstd, N, C, scratch, 0); });
  row("rope_forward", 2.0 * 2 * N * (H + Hkv) * D, [&] { rope_forward(qkv, table, 1, N, H, Hkv, D, 0); });
  row("swiglu_forward (F=C)", 3 * a, [&] { swiglu_forward(out, gu, N, C, 0); });
  row("swiglu_backward (F=C)", 5 * a, [&] { swiglu_backward(dgu, y, gu, N, C, 0); });
  row("residual_forward", 3 * a, [&] { residual_forward(out, x, y, nc, 0); });
  row("accumulate", 3 * a, [&] { accumulate(out, y, nc, 0); });
  row("convert_f32_to_bf16", 3 * a, [&] { convert_f32_to_bf16(copy, f32, nc, 0); });
  row("convert_bf16_to_f32", 3 * a, [&] { convert_bf16_to_f32(f32, x, nc, 0); });
  row("cross_entropy_forward V=257", 2.0 * N * V + 12.0 * N,
      [&] { cross_entropy_forward(losses, lse, logits, tok, N, V, ld, 0); });
  row("cross_entropy_backward V=257", 2.0 * N * V + 2.0 * N * ld + 8.0 * N,  // zeroes the padding too
      [&] { cross_entropy_backward(dlogits, logits, lse, tok, N, V, ld, 1.0f / N, 0); });
  bench_large_vocab_cross_entropy(row, std::min(N, 8192));
  row("sum_squares (fp32 N*C)", 4.0 * nc, [&] { sum_squares(ss, g, nc, scratch, 0); });
  row("scale_inplace (fp32 N*C)", 8.0 * nc, [&] { scale_inplace(f32, nc, 0.999f, 0); });
  row("adamw_update (N*C params)", 30.0 * nc,
      [&] { adamw_update(p, g, m, v, copy, nc, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 10, 0.5f, 0); });
  LH_CUDA_CHECK(cudaDeviceSynchronize());

  for (void* q : std::vector<void*>{x, y, out, w, wte, gu, dgu, qkv, logits, dlogits, copy, f32, rstd, dw, dwte, p, g,
                                    m, v, table, losses, lse, tok, scratch, ss})
    LH_CUDA_CHECK(cudaFree(q));
  bench_lighthouse_kernels(row);
}

}  // namespace lh::cuda

namespace lh {
void bench_cuda_kernels() { cuda::bench_elementwise_kernels(); }
}  // namespace lh
