// RMSNorm forward (one warp per row) and backward (row segments per block, then a deterministic
// two-pass column reduction for dweight).
#include "vec.cuh"

namespace lh::cuda {
namespace {
using namespace detail;

constexpr int kFwdWarps = 8;

// Forward, one warp per row: pass 1 sums squares, pass 2 re-reads the row (an L1 hit: 8 rows of
// a block are a few KB) and writes out = (x * r) * w, the reference's order. Sum in fp32.
// Bytes: N*C*2 read + N*C*2 written + N*4 (rstd) + C*2 (weight, cached).
template <bool kVector>
__global__ __launch_bounds__(kFwdWarps * 32) void rmsnorm_forward_kernel(bf16* out, float* rstd, const bf16* x,
                                                                        const bf16* weight, int N, int C,
                                                                        float eps) {
  const int row = blockIdx.x * kFwdWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const bf16* xr = x + static_cast<size_t>(row) * C;
  bf16* orow = out + static_cast<size_t>(row) * C;
  float ss = 0.f;
  if constexpr (kVector) {
#pragma unroll 4
    for (int c = lane * kVec; c < C; c += 32 * kVec) {
      float f[8];
      load8(f, xr + c);
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += f[j] * f[j];
    }
  } else {
    for (int c = lane; c < C; c += 32) {
      const float f = __bfloat162float(xr[c]);
      ss += f * f;
    }
  }
  ss = warp_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (lane == 0) rstd[row] = r;
  if constexpr (kVector) {
    for (int c = lane * kVec; c < C; c += 32 * kVec) {
      float f[8], w[8];
      load8(f, xr + c);
      load8(w, weight + c);
#pragma unroll
      for (int j = 0; j < 8; ++j) f[j] = f[j] * r * w[j];
      store8(orow + c, f);
    }
  } else {
    for (int c = lane; c < C; c += 32)
      orow[c] = __float2bfloat16(__bfloat162float(xr[c]) * r * __bfloat162float(weight[c]));
  }
}

// Backward, kRows rows per block (kRows = 32).
//   phase A (warp per row): k_n = r^3 * sum_c(dy*w*x) / C
//   phase B (thread per 8 columns, rows in order): dx += r*w*dy - x*k_n; partial[block, c] =
//   sum over the block's rows of dy*x*r, accumulated in increasing row order.
// Phase B re-reads the segment's dy and x (32 rows; L1/L2 hits). The partials are summed by
// rmsnorm_dweight_kernel in block order, so dweight depends on N and C only, never on timing.
// Bytes: N*C*2*2 (dy, x) + N*C*2*2 (dx read+write) + N*4 + ceil(N/32)*C*4*2 (partials, L2).
constexpr int kRows = 32;  // 1024 blocks at N=32768: ~8 per SM, enough warps in flight
constexpr int kBwdThreads = 128;

template <bool kVector>
__global__ __launch_bounds__(kBwdThreads) void rmsnorm_backward_kernel(bf16* dx, float* partial, const bf16* dout,
                                                                       const bf16* x, const bf16* weight,
                                                                       const float* rstd, int N, int C) {
  __shared__ float k_s[kRows], r_s[kRows];
  const int row0 = blockIdx.x * kRows;
  const int rows = min(kRows, N - row0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = warp; i < rows; i += kBwdThreads / 32) {
    const size_t off = static_cast<size_t>(row0 + i) * C;
    float dot = 0.f;
    if constexpr (kVector) {
      for (int c = lane * kVec; c < C; c += 32 * kVec) {
        float dy[8], xv[8], w[8];
        load8(dy, dout + off + c);
        load8(xv, x + off + c);
        load8(w, weight + c);
#pragma unroll
        for (int j = 0; j < 8; ++j) dot += dy[j] * w[j] * xv[j];
      }
    } else {
      for (int c = lane; c < C; c += 32)
        dot += __bfloat162float(dout[off + c]) * __bfloat162float(weight[c]) * __bfloat162float(x[off + c]);
    }
    dot = warp_sum(dot);
    if (lane == 0) {
      const float r = rstd[row0 + i];
      r_s[i] = r;
      k_s[i] = r * r * r * dot / static_cast<float>(C);
    }
  }
  __syncthreads();
  float* part = partial + static_cast<size_t>(blockIdx.x) * C;
  if constexpr (kVector) {
    for (int c = threadIdx.x * kVec; c < C; c += kBwdThreads * kVec) {
      float w[8], dw[8] = {};
      load8(w, weight + c);
#pragma unroll 2
      for (int i = 0; i < rows; ++i) {
        const size_t off = static_cast<size_t>(row0 + i) * C + c;
        float dy[8], xv[8], d[8];
        load8(dy, dout + off);
        load8(xv, x + off);
        load8(d, dx + off);
        const float r = r_s[i], k = k_s[i];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          d[j] += r * w[j] * dy[j] - xv[j] * k;
          dw[j] += dy[j] * xv[j] * r;
        }
        store8(dx + off, d);
      }
      store8(part + c, dw);
    }
  } else {
    for (int c = threadIdx.x; c < C; c += kBwdThreads) {
      const float w = __bfloat162float(weight[c]);
      float dw = 0.f;
      for (int i = 0; i < rows; ++i) {
        const size_t off = static_cast<size_t>(row0 + i) * C + c;
        const float dy = __bfloat162float(dout[off]), xv = __bfloat162float(x[off]);
        dx[off] = __float2bfloat16(__bfloat162float(dx[off]) + (r_s[i] * w * dy - xv * k_s[i]));
        dw += dy * xv * r_s[i];
      }
      part[c] = dw;
    }
  }
}

// dweight[c] += sum over blocks b of partial[b, c]. A block covers 32 columns with 32 slices:
// slice y sums blocks y, y+32, ... in order, then slice sums are added in slice order. All fixed
// by constants, independent of the launch.
constexpr int kSlices = 32;
__global__ __launch_bounds__(32 * kSlices) void rmsnorm_dweight_kernel(float* dweight, const float* partial,
                                                                      int blocks, int C) {
  __shared__ float s[kSlices][33];
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  const int c = blockIdx.x * 32 + tx;
  float acc = 0.f;
  if (c < C)
#pragma unroll 4
    for (int b = ty; b < blocks; b += kSlices) acc += partial[static_cast<size_t>(b) * C + c];
  s[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < C) {
    float total = s[0][tx];
#pragma unroll
    for (int y = 1; y < kSlices; ++y) total += s[y][tx];
    dweight[c] += total;
  }
}
}  // namespace

void rmsnorm_forward(bf16* out, float* rstd, const bf16* x, const bf16* weight, int N, int C, float eps,
                     cudaStream_t s) {
  if (N <= 0 || C <= 0) return;
  const bool vec = C % kVec == 0 && aligned16(out) && aligned16(x) && aligned16(weight);
  const unsigned grid = ceil_div(N, kFwdWarps);
  if (vec)
    rmsnorm_forward_kernel<true><<<grid, kFwdWarps * 32, 0, s>>>(out, rstd, x, weight, N, C, eps);
  else
    rmsnorm_forward_kernel<false><<<grid, kFwdWarps * 32, 0, s>>>(out, rstd, x, weight, N, C, eps);
  LH_CUDA_CHECK_LAUNCH();
}

size_t rmsnorm_backward_scratch_bytes(int N, int C) {
  return static_cast<size_t>(ceil_div(N, kRows)) * static_cast<size_t>(C) * sizeof(float);
}

void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dout, const bf16* x, const bf16* weight,
                      const float* rstd, int N, int C, void* scratch, cudaStream_t s) {
  if (N <= 0 || C <= 0) return;
  float* partial = static_cast<float*>(scratch);
  const bool vec = C % kVec == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(weight) &&
                   aligned16(partial);
  const unsigned blocks = ceil_div(N, kRows);
  if (vec)
    rmsnorm_backward_kernel<true><<<blocks, kBwdThreads, 0, s>>>(dx, partial, dout, x, weight, rstd, N, C);
  else
    rmsnorm_backward_kernel<false><<<blocks, kBwdThreads, 0, s>>>(dx, partial, dout, x, weight, rstd, N, C);
  LH_CUDA_CHECK_LAUNCH();
  rmsnorm_dweight_kernel<<<ceil_div(C, 32), 32 * kSlices, 0, s>>>(dweight, partial, static_cast<int>(blocks), C);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
