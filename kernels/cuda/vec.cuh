// Device helpers shared by the hand-written kernels: 16-byte vector loads/stores (8 bf16 or 4+4
// floats per transaction, the widest a thread can issue, so a warp moves 512 contiguous bytes per
// instruction), a deterministic warp reduction, and the host-side grid sizing of grid-stride loops.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "cuda_check.h"
#include "kernels.h"

namespace lh::cuda::detail {

constexpr int kVec = 8;  // bf16 per 16-byte vector

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// 8 bf16 packed in 16 bytes -> 8 floats (exact: a bf16 is the top half of its float). Done on the
// four 32-bit words rather than through a __nv_bfloat162 view of the vector: that view let the
// compiler split every 16-byte load into four 4-byte loads (4x the load instructions, and only
// 8 of each sector's 32 bytes used per request), which made the issue-bound kernels slower.
// The two bf16 of a 32-bit word (the first in the low half) as floats.
__device__ __forceinline__ float bf16_low(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_high(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ void unpack8(float (&f)[8], const uint4& raw) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = bf16_low(w[i]);
    f[2 * i + 1] = bf16_high(w[i]);
  }
}

__device__ __forceinline__ void load8(float (&f)[8], const bf16* p) {
  unpack8(f, *reinterpret_cast<const uint4*>(p));
}

// The same for memory that no thread writes during the kernel: __ldg is one 16-byte load that the
// compiler cannot split (it did split plain uint4 loads inside some unrolled loops).
__device__ __forceinline__ void load8_readonly(float (&f)[8], const bf16* p) {
  unpack8(f, __ldg(reinterpret_cast<const uint4*>(p)));
}

__device__ __forceinline__ void store8(bf16* p, const float (&f)[8]) {
  uint4 raw;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = raw;
}

__device__ __forceinline__ void load8(float (&f)[8], const float* p) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
  f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

__device__ __forceinline__ void store8(float* p, const float (&f)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}

// Butterfly sum: every lane ends with the same bits (IEEE addition is commutative, and each step
// pairs the same partners whatever the timing), so row statistics are deterministic.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ size_t global_thread() {
  return static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t grid_threads() { return static_cast<size_t>(gridDim.x) * blockDim.x; }

// The current device's SM count, read once per device (per host thread: one GPU each).
inline int sm_count() {
  static thread_local int cached_device = -1, cached_sms = 0;
  int dev = 0;
  LH_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != cached_device) {
    LH_CUDA_CHECK(cudaDeviceGetAttribute(&cached_sms, cudaDevAttrMultiProcessorCount, dev));
    cached_device = dev;
  }
  return cached_sms;
}

// Grid for a grid-stride loop over `items`: enough blocks to fill every SM several times over, no
// more (beyond that, extra blocks only add scheduling). Used only for elementwise kernels, whose
// results never depend on the grid.
inline unsigned grid_for(size_t items, int threads, int blocks_per_sm = 16) {
  const size_t want = (items + threads - 1) / threads;
  const size_t cap = static_cast<size_t>(sm_count()) * blocks_per_sm;
  return static_cast<unsigned>(std::max<size_t>(1, std::min(want, cap)));
}

inline unsigned ceil_div(size_t a, size_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace lh::cuda::detail
