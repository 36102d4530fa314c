// Bitwise comparison of two device buffers (cuBLASLt's tuning keeps only algorithms whose output
// is bit-identical to the heuristic's first choice: cublaslt_matmul.cpp).
#include <cstdint>
#include <stdexcept>

#include "cuda_check.h"
#include "kernels.h"
#include "vec.cuh"

namespace lh::cuda {
namespace {

// 4-byte words where both buffers are 4-byte aligned (cudaMalloc'd), then the last bytes one by one.
__global__ void bytes_differ_kernel(const uint8_t* a, const uint8_t* b, size_t bytes, int* differ) {
  const size_t words = bytes / 4;
  const auto* wa = reinterpret_cast<const uint32_t*>(a);
  const auto* wb = reinterpret_cast<const uint32_t*>(b);
  for (size_t i = detail::global_thread(); i < words; i += detail::grid_threads())
    if (wa[i] != wb[i]) *differ = 1;  // a plain store: any writer sets the same value
  if (detail::global_thread() == 0)
    for (size_t i = 4 * words; i < bytes; ++i)
      if (a[i] != b[i]) *differ = 1;
}

}  // namespace

bool bytes_equal(const void* a, const void* b, size_t bytes, int* flag, cudaStream_t s) {
  if (reinterpret_cast<uintptr_t>(a) % 4 != 0 || reinterpret_cast<uintptr_t>(b) % 4 != 0)
    throw std::invalid_argument("bytes_equal: the buffers must be 4-byte aligned");
  LH_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), s));
  bytes_differ_kernel<<<detail::grid_for(bytes / 4 + 1, 256), 256, 0, s>>>(static_cast<const uint8_t*>(a),
                                                                          static_cast<const uint8_t*>(b), bytes, flag);
  LH_CUDA_CHECK_LAUNCH();
  int differ = 0;
  LH_CUDA_CHECK(cudaMemcpyAsync(&differ, flag, sizeof differ, cudaMemcpyDeviceToHost, s));
  LH_CUDA_CHECK(cudaStreamSynchronize(s));
  return differ == 0;
}

}  // namespace lh::cuda
