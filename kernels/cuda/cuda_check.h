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
