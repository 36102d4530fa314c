// Host-side launchers of the hand-written CUDA kernels (one .cu file per op family, forward and
// backward side by side). Semantics are those of the CPU reference (include/lighthouse/ops/
// cpu_reference.h) with the mixed-precision types of the CUDA backend:
//   activations and compute weights: bf16;  parameter gradients, rstd, lse, losses, master weights
//   and AdamW moments: fp32.
// Every launcher is asynchronous on `stream`, deterministic (no float atomics; fixed reduction
// order for any launch configuration) and takes a `scratch` buffer where a two-pass reduction
// needs one (see each *_scratch_bytes function).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace lh::cuda {

using bf16 = __nv_bfloat16;

// Scratch buffers are carved into pieces that each start on a 256-byte boundary.
constexpr size_t kScratchAlign = 256;
inline size_t round_up_scratch(size_t n) { return (n + kScratchAlign - 1) / kScratchAlign * kScratchAlign; }

// ---- embedding.cu ----
void embedding_forward(bf16* out, const int32_t* tokens, const bf16* wte, int N, int C, cudaStream_t s);
// dwte[v, :] += sum over n with tokens[n] == v of dout[n, :], in increasing n (fp32 accumulate).
// Every token must lie in [0, V) (the data loader checks them; the sorted path does not).
// Scans the tokens per vocabulary row for small V, sorts them by token for larger V (kAuto); both
// give the same bits. scratch: embedding_backward_scratch_bytes(N, V, path) bytes (0 for the scan).
enum class EmbeddingBackward { kAuto, kScan, kSorted };
size_t embedding_backward_scratch_bytes(int N, int V, EmbeddingBackward path = EmbeddingBackward::kAuto);
void embedding_backward(float* dwte, const bf16* dout, const int32_t* tokens, int N, int C, int V, void* scratch,
                        cudaStream_t s, EmbeddingBackward path = EmbeddingBackward::kAuto);

// ---- rmsnorm.cu ----
void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const bf16* weight, int N, int C, float eps,
                     cudaStream_t s);
// dx += (bf16), dweight += (fp32, deterministic two-pass column reduction using scratch).
size_t rmsnorm_backward_scratch_bytes(int N, int C);
void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dout, const bf16* x, const bf16* weight,
                      const float* rstd, int N, int C, void* scratch, cudaStream_t s);

// ---- rope.cu ----
// cos_sin: [T, D/2, 2] float table (cos, sin) computed on the host exactly as the CPU reference
// computes its angles, so both backends rotate by identical angles.
// The table comes from lh::cpu::rope_cos_sin_table (include/lighthouse/ops/cpu_reference.h).
void rope_forward(bf16* qkv, const float* cos_sin, int B, int T, int H, int Hkv, int D, cudaStream_t s);
void rope_backward(bf16* dqkv, const float* cos_sin, int B, int T, int H, int Hkv, int D, cudaStream_t s);

// ---- swiglu.cu ----
void swiglu_forward(bf16* out, const bf16* gate_up, int N, int F, cudaStream_t s);
void swiglu_backward(bf16* dgate_up, const bf16* dout, const bf16* gate_up, int N, int F, cudaStream_t s);

// ---- residual.cu ----
void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n, cudaStream_t s);
void accumulate(bf16* dst, const bf16* src, size_t n, cudaStream_t s);
void convert_f32_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t s);
void convert_bf16_to_f32(float* dst, const bf16* src, size_t n, cudaStream_t s);
// dst += src, fp32 accumulator (the key-chunked attention backward's dQ partials).
void accumulate_f32(float* dst, const bf16* src, size_t n, cudaStream_t s);
// dst[b, h, t, :] = src[b, t, h, :] for a compact fp32 src [B, T, H, D] and a bf16 dst with element
// strides (sb, sh, st) and unit stride along D (D a multiple of 8, dst 16-byte aligned).
void convert_f32_to_bf16_strided(bf16* dst, const float* src, int B, int64_t T, int H, int D, int64_t sb, int64_t sh,
                                 int64_t st, cudaStream_t s);

// ---- cross_entropy.cu ----
// lse[n] = logsumexp(logits[n]) and losses[n] = lse[n] - logits[n, target] in fp32 (online
// softmax, one pass). Rows of logits (and dlogits) are ld >= V elements apart: the padding is not
// read, and the backward sets dlogits' padding to zero.
void cross_entropy_forward(float* losses, float* lse, const bf16* logits, const int32_t* targets, int N, int V,
                           int ld, cudaStream_t s);
// dlogits = (exp(logits - lse) - onehot) * dloss with the forward's lse: one pass over each row,
// written in place over logits allowed (probabilities are never stored separately).
void cross_entropy_backward(bf16* dlogits, const bf16* logits, const float* lse, const int32_t* targets, int N,
                            int V, int ld, float dloss, cudaStream_t s);

// ---- adamw.cu ----
// Sum of squares of n fp32 values, accumulated in fp64 in a fixed order; the result lands in
// *result (device memory, one double). scratch: sum_squares_scratch_bytes(n).
size_t sum_squares_scratch_bytes(size_t n);
void sum_squares(double* result, const float* x, size_t n, void* scratch, cudaStream_t s);
void scale_inplace(float* x, size_t n, float scale, cudaStream_t s);
// AdamW on fp32 master weights/moments, as in the CPU reference, on grad * grad_scale (the same
// float product scale_inplace stores); when compute_copy is not null it receives the updated
// weights in bf16.
void adamw_update(float* param, const float* grad, float* m, float* v, bf16* compute_copy, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int step, float grad_scale,
                  cudaStream_t s);

// ---- bytes_equal.cu ----
// Whether two 4-byte-aligned device buffers hold the same `bytes` bytes; `flag` is one device int
// of scratch. Synchronizes the stream.
bool bytes_equal(const void* a, const void* b, size_t bytes, int* flag, cudaStream_t s);

// ---- bench_kernels.cu ----
// Times every kernel above at rows x cols (bf16 activations; logits rows x 257) on the current
// device and prints achieved GB/s per kernel (bytes each kernel must move / median time), with a
// device-to-device cudaMemcpy as the bandwidth ceiling.
void bench_elementwise_kernels(int rows = 32768, int cols = 1024);

}  // namespace lh::cuda
