// The CPU reference of every op: plain, deterministic, scalar-type generic (instantiated for float,
// the working backend, and double, which the finite-difference tests use). One file per op family
// in kernels/cpu/, forward and backward side by side. The CUDA backend implements the same
// contracts; these functions are its oracle.
//
// Conventions
// - Row-major. "N" is a count of rows (tokens: batch * seq), "C" a feature width.
// - Backward functions ACCUMULATE (+=) into parameter gradients (dweight, dwte), because gradient
//   accumulation over micro-batches and tied weights both need it. Activation gradients are
//   written (=) unless the function says "accumulates".
// - Every function is deterministic for any thread count: each output element is produced by one
//   thread with a fixed summation order.
#pragma once
#include <cstdint>

namespace lh::cpu {

// ---- embedding (kernels/cpu/embedding.cpp) -------------------------------------------------------
// out[n, :] = wte[tokens[n], :]
template <typename T> void embedding_forward(T* out, const int32_t* tokens, const T* wte, int N, int C);
// dwte[tokens[n], :] += dout[n, :]
template <typename T> void embedding_backward(T* dwte, const T* dout, const int32_t* tokens, int N, int C);

// ---- RMSNorm (kernels/cpu/rmsnorm.cpp) -----------------------------------------------------------
// rstd[n] = 1 / sqrt(mean(x[n,:]^2) + eps); out[n,c] = x[n,c] * rstd[n] * weight[c]
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* weight, int N, int C, double eps);
// dx ACCUMULATES (+=) the input gradient (the residual stream's gradient flows through dx);
// dweight accumulates.
template <typename T>
void rmsnorm_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight, const T* rstd,
                      int N, int C);

// ---- matmul (kernels/cpu/matmul.cpp) ---------------------------------------------------------------
// out[N, OC] = x[N, IC] @ weight[OC, IC]^T   (weights stored as in nn.Linear: [out, in]); the rows
// of out (and of dout below) are ld >= OC elements apart; out's padding is set to zero, dout's is
// not read.
template <typename T> void matmul_forward(T* out, const T* x, const T* weight, int N, int IC, int OC, int ld);
// dx[N, IC] = dout @ weight (written);  dweight[OC, IC] += dout^T @ x
// dx may be null (no input gradient wanted).
template <typename T>
void matmul_backward(T* dx, T* dweight, const T* dout, const T* x, const T* weight, int N, int IC, int OC, int ld);

// ---- RoPE (kernels/cpu/rope.cpp) -------------------------------------------------------------------
// In place on the Q and K parts of a fused qkv activation laid out [B, T, (H + 2*Hkv) * D]:
// per token the H query heads, then the Hkv key heads, then the Hkv value heads (values untouched).
// Rotate-half convention of Hugging Face Llama: for i < D/2 the pair (x[i], x[i + D/2]) is rotated
// by angle = t * theta^(-2i/D), computed in float exactly as transformers does
// (inv_freq = 1 / theta^(2i/D) in float, angle = float(t) * inv_freq) so exported models agree.
// The double instantiation widens that same float angle to double (both precisions rotate by
// identical angles; only cos/sin and the rotation itself run in double).
template <typename T> void rope_forward(T* qkv, int B, int Tlen, int H, int Hkv, int D, double theta);
// The float (cos, sin) of every angle, table[(t * D/2 + i) * 2 + {0, 1}], computed exactly as the
// float reference does; the CUDA backend uploads it so both backends rotate by identical angles.
void rope_cos_sin_table(float* table, int Tlen, int D, double theta);
// The adjoint: rotation by -angle, in place on dqkv.
template <typename T> void rope_backward(T* dqkv, int B, int Tlen, int H, int Hkv, int D, double theta);

// ---- causal attention with GQA (kernels/cpu/attention.cpp) ---------------------------------------
// Reads q, k, v from the fused qkv [B, T, (H + 2*Hkv) * D]; query head h uses kv head h / (H/Hkv).
// out [B, T, H * D]; lse [B, H, T] = log-sum-exp of the scaled, masked scores of each query row
// (natural log), saved for backward. Scale 1/sqrt(D), causal (t attends to s <= t).
template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, int B, int Tlen, int H, int Hkv, int D);
// dqkv written (all three parts, the V part included); GQA gradients of K and V are summed over
// the query heads of a group in a fixed order.
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse, int B, int Tlen,
                        int H, int Hkv, int D);

// ---- SwiGLU (kernels/cpu/swiglu.cpp) ---------------------------------------------------------------
// gate_up [N, 2F]: per row the F gate values, then the F up values. out[n, f] = silu(g) * u.
template <typename T> void swiglu_forward(T* out, const T* gate_up, int N, int F);
template <typename T> void swiglu_backward(T* dgate_up, const T* dout, const T* gate_up, int N, int F);

// ---- residual (kernels/cpu/residual.cpp) ---------------------------------------------------------
// out = a + b (elementwise, n elements); out may alias a or b.
template <typename T> void residual_forward(T* out, const T* a, const T* b, size_t n);
// dst += src
template <typename T> void accumulate(T* dst, const T* src, size_t n);

// ---- softmax cross-entropy (kernels/cpu/cross_entropy.cpp) ----------------------------------------
// lse[n] = logsumexp(logits[n, :]) and losses[n] = lse[n] - logits[n, targets[n]]; logits [N, V]
// with rows ld >= V elements apart (the padding is not read; the backward sets dlogits' padding
// to zero).
template <typename T>
void cross_entropy_forward(T* losses, T* lse, const T* logits, const int32_t* targets, int N, int V, int ld);
// dlogits[n, :] = (softmax(logits[n, :]) - onehot(targets[n])) * dloss, written, with the
// forward's lse: softmax = exp(logits - lse), one pass over each row. dlogits may alias logits
// (in place), which saves the second [N, V] buffer.
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const T* lse, const int32_t* targets, int N, int V, int ld,
                            double dloss);

// ---- optimizer helpers (kernels/cpu/adamw.cpp) -------------------------------------------------
// Sum of squares in double, fixed order (for the global gradient norm).
template <typename T> double sum_squares(const T* x, size_t n);
template <typename T> void scale_inplace(T* x, size_t n, double s);
// One AdamW step on n elements (decoupled weight decay, bias-corrected moments; step >= 1), with
// g = grad * grad_scale (gradient clipping folded in; grad itself is not written):
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr * ( (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps) + weight_decay * p )
template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, size_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, int step, double grad_scale = 1.0);

}  // namespace lh::cpu
