// RMSNorm forward (one warp per row) and backward (a warp per 16 rows held in registers where the
// row fits, else row segments per block; then a deterministic column reduction for dweight).
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

// Backward for rows that fit a warp's registers (C = 256 * kChunks): one pass over memory instead
// of the kernel above's two. Warp w owns rows [16 w, 16 w + 16): per row it loads dy, x and dx
// once (all of them before the row's reduction, so they are in flight together), forms k_n with a
// warp sum, writes dx, and keeps dw for its 16 rows in registers; partial[w, c] is their sum in
// increasing row order, reduced by rmsnorm_dweight_kernel as above. Lane l holds columns
// (i * 32 + l) * 8 .. + 7 for i < kChunks, so each load instruction of a warp is 512 contiguous bytes.
// Bytes: N*C*2*2 (dy, x) + N*C*2*2 (dx read+write) + N*4 + ceil(N/16)*C*4*2 (partials).
// Launch bounds ask for 4 blocks per SM: at C = 1024 that caps registers at 128 (150 unbounded,
// a few bytes spilled) and puts all 2,048 warps of N = 32768 on the GPU in one wave.
constexpr int kRowsPerWarp = 16, kRowWarps = 4;

template <int kChunks>
__global__ __launch_bounds__(kRowWarps * 32, 4) void rmsnorm_backward_rows_kernel(bf16* dx, float* partial,
                                                                               const bf16* dout, const bf16* x,
                                                                               const bf16* weight, const float* rstd,
                                                                               int N) {
  constexpr int C = kChunks * 32 * kVec;
  const int warp = blockIdx.x * kRowWarps + threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row0 = warp * kRowsPerWarp;
  if (row0 >= N) return;
  const int rows = min(kRowsPerWarp, N - row0);
  float dw[kChunks][8] = {};
  for (int i = 0; i < rows; ++i) {
    const size_t off = static_cast<size_t>(row0 + i) * C + lane * kVec;
    uint4 dy_raw[kChunks], x_raw[kChunks], dx_raw[kChunks];
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      dy_raw[k] = *reinterpret_cast<const uint4*>(dout + off + k * 32 * kVec);
      x_raw[k] = *reinterpret_cast<const uint4*>(x + off + k * 32 * kVec);
      dx_raw[k] = *reinterpret_cast<const uint4*>(dx + off + k * 32 * kVec);
    }
    float dot = 0.f;
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      float dy[8], xv[8], w[8];
      unpack8(dy, dy_raw[k]);
      unpack8(xv, x_raw[k]);
      load8(w, weight + (k * 32 + lane) * kVec);  // 2 KB per row: L1 hits after the first row
#pragma unroll
      for (int j = 0; j < 8; ++j) dot += dy[j] * w[j] * xv[j];
    }
    dot = warp_sum(dot);
    const float r = rstd[row0 + i], kn = r * r * r * dot / static_cast<float>(C);
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      float dy[8], xv[8], w[8], d[8];
      unpack8(dy, dy_raw[k]);
      unpack8(xv, x_raw[k]);
      unpack8(d, dx_raw[k]);
      load8(w, weight + (k * 32 + lane) * kVec);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        d[j] += r * w[j] * dy[j] - xv[j] * kn;
        dw[k][j] += dy[j] * xv[j] * r;
      }
      store8(dx + off + k * 32 * kVec, d);
    }
  }
#pragma unroll
  for (int k = 0; k < kChunks; ++k) store8(partial + static_cast<size_t>(warp) * C + (k * 32 + lane) * kVec, dw[k]);
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
  // Partials: one row per block of kRows rows, or per warp of kRowsPerWarp rows (the larger count).
  static_assert(kRowsPerWarp <= kRows, "the scratch size assumes the row kernel has more partials");
  return static_cast<size_t>(ceil_div(N, kRowsPerWarp)) * static_cast<size_t>(C) * sizeof(float);
}

void rmsnorm_backward(bf16* dx, float* dweight, const bf16* dout, const bf16* x, const bf16* weight,
                      const float* rstd, int N, int C, void* scratch, cudaStream_t s) {
  if (N <= 0 || C <= 0) return;
  float* partial = static_cast<float*>(scratch);
  const bool vec = C % kVec == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(weight) &&
                   aligned16(partial);
  // Rows of 256 * k elements, k <= 4, fit a warp's registers; other widths take two passes.
  constexpr int kWarpRow = 32 * kVec;
  const int chunks = vec && C % kWarpRow == 0 ? C / kWarpRow : 0;
  unsigned partials = ceil_div(N, kRowsPerWarp);
  const unsigned row_blocks = ceil_div(partials, kRowWarps);
  auto launch_rows = [&](auto kernel) {
    kernel<<<row_blocks, kRowWarps * 32, 0, s>>>(dx, partial, dout, x, weight, rstd, N);
  };
  switch (chunks) {
    case 1: launch_rows(rmsnorm_backward_rows_kernel<1>); break;
    case 2: launch_rows(rmsnorm_backward_rows_kernel<2>); break;
    case 3: launch_rows(rmsnorm_backward_rows_kernel<3>); break;
    case 4: launch_rows(rmsnorm_backward_rows_kernel<4>); break;
    default: partials = 0;  // the two-pass kernel below
  }
  if (!partials) {
    partials = ceil_div(N, kRows);
    if (vec)
      rmsnorm_backward_kernel<true><<<partials, kBwdThreads, 0, s>>>(dx, partial, dout, x, weight, rstd, N, C);
    else
      rmsnorm_backward_kernel<false><<<partials, kBwdThreads, 0, s>>>(dx, partial, dout, x, weight, rstd, N, C);
  }
  LH_CUDA_CHECK_LAUNCH();
  rmsnorm_dweight_kernel<<<ceil_div(C, 32), 32 * kSlices, 0, s>>>(dweight, partial, static_cast<int>(partials), C);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
