// Helpers of the CUDA micro-benchmarks (bench_kernels.cu, bench_gemm.cu): pseudo-random device
// buffers (never zeros) and median event timing of one launch.
#pragma once
#include <algorithm>
#include <functional>
#include <vector>

#include "cuda_check.h"
#include "vec.cuh"

namespace lh::cuda::bench {

__device__ __forceinline__ float hash_uniform(size_t i, uint32_t seed) {  // in [-1, 1)
  uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ static_cast<uint32_t>(i >> 32) ^ seed * 0x85EBCA77u;
  h ^= h >> 15; h *= 0x2C1B3C6Du; h ^= h >> 12; h *= 0x297A2D39u; h ^= h >> 15;
  return static_cast<float>(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
}
template <typename T>
__global__ void fill_kernel(T* p, size_t n, uint32_t seed, float lo, float hi) {
  for (size_t i = detail::global_thread(); i < n; i += detail::grid_threads())
    p[i] = static_cast<T>(lo + (hi - lo) * 0.5f * (hash_uniform(i, seed) + 1.0f));
}
// n values uniform in [lo, hi), a function of (index, seed).
template <typename T>
T* alloc_fill(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  T* p = nullptr;
  LH_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
  fill_kernel<T><<<detail::grid_for(n, 256), 256>>>(p, n, seed, lo, hi);
  LH_CUDA_CHECK_LAUNCH();
  return p;
}

// Median milliseconds of one launch of f on the default stream (CUDA events around each of
// `iters` launches, after `warmup` untimed ones).
inline float time_ms(const std::function<void()>& f, int warmup = 3, int iters = 20) {
  cudaEvent_t a, b;
  LH_CUDA_CHECK(cudaEventCreate(&a));
  LH_CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) f();
  std::vector<float> ms;
  for (int i = 0; i < iters; ++i) {
    LH_CUDA_CHECK(cudaEventRecord(a));
    f();
    LH_CUDA_CHECK(cudaEventRecord(b));
    LH_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0.f;
    LH_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  LH_CUDA_CHECK(cudaEventDestroy(a));
  LH_CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace lh::cuda::bench
