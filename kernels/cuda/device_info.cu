#include <cuda_runtime.h>

#include <cstdio>

#include "lighthouse/device.h"

namespace lh {

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

std::string cuda_device_description(int index) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) return "unknown CUDA device";
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s, %.1f GiB, sm_%d%d, %d SMs", prop.name,
                prop.totalGlobalMem / double(1 << 30), prop.major, prop.minor, prop.multiProcessorCount);
  return buf;
}

}  // namespace lh
