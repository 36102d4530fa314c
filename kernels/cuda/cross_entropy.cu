// Softmax cross-entropy, one warp per row of V logits.
// Forward: the row's log-sum-exp (lse, kept for the backward) and its loss.
//   V <= 1024 (our byte vocabulary, V = 257): the row is read into registers (lane l holds
//     logits l, l+32, ...: each load instruction is a coalesced 64-byte warp access), then max and
//     sum of exponentials are exact-order warp reductions.
//   V > 1024: an online softmax (running max and rescaled sum per lane, merged across lanes) in
//     one read of the row, with 16-byte loads where rows allow them (ld % 8 == 0, as the model's
//     padded logits).
// Backward: one pass, p = exp(logit - lse), each lane reading then writing its own elements (so
// in place is safe); 16-byte loads and stores where rows allow them.
// Rows are ld >= V elements apart; the backward zeroes dlogits' padding (V..ld).
// Bytes: forward N*V*2 read + N*12 (targets, lse, losses); backward N*V*2 read + N*ld*2 written
// + N*8.
#include <cfloat>
#include <stdexcept>
#include <string>

#include "vec.cuh"

namespace lh::cuda {
namespace {
using namespace detail;

constexpr int kWarps = 8;  // rows per block

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Row statistics from registers: m = max, s = sum exp(x - m). J = logits per lane.
template <int J>
__device__ __forceinline__ void row_stats_regs(const float (&x)[J], int lane, int V, float& m, float& s) {
  m = -FLT_MAX;
#pragma unroll
  for (int j = 0; j < J; ++j)
    if (lane + 32 * j < V) m = fmaxf(m, x[j]);
  m = warp_max(m);
  s = 0.f;
#pragma unroll
  for (int j = 0; j < J; ++j)
    if (lane + 32 * j < V) s += __expf(x[j] - m);
  s = warp_sum(s);
}

// dlogits' row padding (columns V..ld) is zeroed: the output layer's dx GEMM reads it (cuda_backend.cpp).
__device__ __forceinline__ void zero_padding(bf16* row, int lane, int V, int ld) {
  for (int v = V + lane; v < ld; v += 32) row[v] = __float2bfloat16(0.f);
}

template <int J>
__device__ __forceinline__ void load_row(float (&x)[J], const bf16* row, int lane, int V) {
#pragma unroll
  for (int j = 0; j < J; ++j) x[j] = lane + 32 * j < V ? __bfloat162float(row[lane + 32 * j]) : 0.f;
}

// Lane 0 writes the row's results from its statistics (m, s).
__device__ __forceinline__ void write_row_loss(float* losses, float* lse, const bf16* row, int32_t target, int n,
                                               int lane, float m, float s) {
  if (lane != 0) return;
  const float l = m + logf(s);
  lse[n] = l;
  losses[n] = l - __bfloat162float(row[target]);
}

template <int J>
__global__ __launch_bounds__(kWarps * 32) void ce_forward_small(float* losses, float* lse, const bf16* logits,
                                                                const int32_t* targets, int N, int V, int ld) {
  const int n = blockIdx.x * kWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (n >= N) return;
  const bf16* row = logits + static_cast<size_t>(n) * ld;
  float x[J], m, s;
  load_row(x, row, lane, V);
  row_stats_regs(x, lane, V, m, s);
  write_row_loss(losses, lse, row, targets[n], n, lane, m, s);
}

// Online softmax: merge (m1, s1) and (m2, s2). Rounded products (no FMA contraction) keep the
// merge symmetric, so both lanes of a butterfly step hold the same bits.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  s = __fadd_rn(__fmul_rn(s, __expf(m - mm)), __fmul_rn(s2, __expf(m2 - mm)));
  m = mm;
}

// Every lane ends with the warp's (m, s), merged by a butterfly.
__device__ __forceinline__ void merge_lanes(float& m, float& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge(m, s, m2, s2);
  }
}

__device__ __forceinline__ void row_stats_online(const bf16* row, int lane, int V, float& m, float& s) {
  m = -FLT_MAX;  // not -inf: exp(-FLT_MAX - -FLT_MAX) = 1 times s = 0, never NaN
  s = 0.f;
  for (int v = lane; v < V; v += 32) {
    const float x = __bfloat162float(row[v]);
    if (x > m) {
      s = s * __expf(m - x) + 1.f;
      m = x;
    } else {
      s += __expf(x - m);
    }
  }
  merge_lanes(m, s);
}

// Vector form of the statistics, for rows that start on 16 bytes with ld % 8 == 0 (the model's
// padded logits): a lane folds 8 logits per 16-byte load into its (m, s), two loads in flight; a
// warp load covers 512 contiguous bytes, where the scalar loop's covers 64 and reaches only ~45%
// of the copy bandwidth (bench kernels). Reads stay inside the row: v0 < V <= ld, v0 + 8 <= ld.
constexpr int kWarpVec = 32 * kVec;  // logits per warp-wide vector load

__device__ __forceinline__ void fold8(float& m, float& s, const float (&x)[kVec], int v0, int V) {
  float mx = m;
#pragma unroll
  for (int j = 0; j < kVec; ++j)
    if (v0 + j < V) mx = fmaxf(mx, x[j]);
  float add = 0.f;
#pragma unroll
  for (int j = 0; j < kVec; ++j)
    if (v0 + j < V) add += __expf(x[j] - mx);
  s = s * __expf(m - mx) + add;
  m = mx;
}

__device__ __forceinline__ void row_stats_online_vec(const bf16* row, int lane, int V, float& m, float& s) {
  m = -FLT_MAX;
  s = 0.f;
  for (int v0 = lane * kVec; v0 < V; v0 += 2 * kWarpVec) {
    float a[kVec], b[kVec];
    const bool second = v0 + kWarpVec < V;
    load8(a, row + v0);
    if (second) load8(b, row + v0 + kWarpVec);
    fold8(m, s, a, v0, V);
    if (second) fold8(m, s, b, v0 + kWarpVec, V);
  }
  merge_lanes(m, s);
}

template <bool kVector>
__global__ __launch_bounds__(kWarps * 32) void ce_forward_large(float* losses, float* lse, const bf16* logits,
                                                                const int32_t* targets, int N, int V, int ld) {
  const int n = blockIdx.x * kWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (n >= N) return;
  const bf16* row = logits + static_cast<size_t>(n) * ld;
  float m, s;
  if constexpr (kVector)
    row_stats_online_vec(row, lane, V, m, s);
  else
    row_stats_online(row, lane, V, m, s);
  write_row_loss(losses, lse, row, targets[n], n, lane, m, s);
}

template <bool kVector>
__global__ __launch_bounds__(kWarps * 32) void ce_backward(bf16* dlogits, const bf16* logits, const float* lse,
                                                           const int32_t* targets, int N, int V, int ld,
                                                           float dloss) {
  const int n = blockIdx.x * kWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (n >= N) return;
  const size_t off = static_cast<size_t>(n) * ld;
  const int t = targets[n];
  const float l = lse[n];
  // Each lane reads then writes only its own indices, so in-place is safe on both paths.
  if constexpr (kVector) {
    for (int v0 = lane * kVec; v0 < V; v0 += kWarpVec) {
      float x[kVec];
      load8(x, logits + off + v0);
#pragma unroll
      for (int j = 0; j < kVec; ++j)  // the padding inside the last vector is written as zeros
        x[j] = v0 + j < V ? (__expf(x[j] - l) - (v0 + j == t ? 1.f : 0.f)) * dloss : 0.f;
      store8(dlogits + off + v0, x);
    }
    zero_padding(dlogits + off, lane, (V + kVec - 1) / kVec * kVec, ld);
  } else {
    for (int v = lane; v < V; v += 32) {
      const float p = __expf(__bfloat162float(logits[off + v]) - l);
      dlogits[off + v] = __float2bfloat16((p - (v == t ? 1.f : 0.f)) * dloss);
    }
    zero_padding(dlogits + off, lane, V, ld);
  }
}

void check_row_stride(int V, int ld) {
  if (ld < V)
    throw std::invalid_argument("cross_entropy: row stride " + std::to_string(ld) + " < V = " + std::to_string(V));
}

// Picks the register count per lane (J) for V <= 1024; returns false for larger V.
template <typename F> bool dispatch_small(int V, F&& f) {
  if (V <= 32 * 4) return f(std::integral_constant<int, 4>{}), true;
  if (V <= 32 * 8) return f(std::integral_constant<int, 8>{}), true;
  if (V <= 32 * 16) return f(std::integral_constant<int, 16>{}), true;
  if (V <= 32 * 32) return f(std::integral_constant<int, 32>{}), true;
  return false;
}
}  // namespace

void cross_entropy_forward(float* losses, float* lse, const bf16* logits, const int32_t* targets, int N, int V,
                           int ld, cudaStream_t s) {
  if (N <= 0 || V <= 0) return;
  check_row_stride(V, ld);
  const unsigned grid = ceil_div(N, kWarps);
  const bool small = dispatch_small(V, [&](auto j) {
    ce_forward_small<decltype(j)::value><<<grid, kWarps * 32, 0, s>>>(losses, lse, logits, targets, N, V, ld);
  });
  if (!small && ld % kVec == 0 && aligned16(logits))
    ce_forward_large<true><<<grid, kWarps * 32, 0, s>>>(losses, lse, logits, targets, N, V, ld);
  else if (!small)
    ce_forward_large<false><<<grid, kWarps * 32, 0, s>>>(losses, lse, logits, targets, N, V, ld);
  LH_CUDA_CHECK_LAUNCH();
}

void cross_entropy_backward(bf16* dlogits, const bf16* logits, const float* lse, const int32_t* targets, int N,
                            int V, int ld, float dloss, cudaStream_t s) {
  if (N <= 0 || V <= 0) return;
  check_row_stride(V, ld);
  const unsigned grid = ceil_div(N, kWarps);
  if (ld % kVec == 0 && aligned16(logits) && aligned16(dlogits))
    ce_backward<true><<<grid, kWarps * 32, 0, s>>>(dlogits, logits, lse, targets, N, V, ld, dloss);
  else
    ce_backward<false><<<grid, kWarps * 32, 0, s>>>(dlogits, logits, lse, targets, N, V, ld, dloss);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
