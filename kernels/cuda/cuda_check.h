// Error checking for CUDA runtime calls: a failed call throws with the file, line and message,
// so a GPU error surfaces as a clear exception instead of a later crash.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace lh::cuda {
inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + " at " + file + ":" + std::to_string(line) +
                             ": " + cudaGetErrorString(e));
}
}  // namespace lh::cuda

#define LH_CUDA_CHECK(call) ::lh::cuda::check((call), #call, __FILE__, __LINE__)
// After a kernel launch: catches bad launch configurations immediately.
#define LH_CUDA_CHECK_LAUNCH() ::lh::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

namespace lh::cuda {
// A block may hold more than 48 KiB of shared memory (static plus dynamic) only where its kernel
// opts in to the larger dynamic part. The static part counts too: checking the dynamic size alone
// misses a kernel whose dynamic part is just under the limit.
template <typename Kernel>
void allow_dynamic_shared_memory(Kernel* kernel, size_t dynamic_bytes) {
  constexpr size_t kDefaultLimit = 48 * 1024;
  cudaFuncAttributes attributes{};
  LH_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  if (attributes.sharedSizeBytes + dynamic_bytes > kDefaultLimit)
    LH_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dynamic_bytes)));
}
}  // namespace lh::cuda
