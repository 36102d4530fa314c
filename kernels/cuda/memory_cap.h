// A smaller device emulated on a larger one (`--device-memory`, e.g. an 80 GB H100 on a 141 GB
// H200): the device counts as ending at `bytes`. Allocations that would take its used memory (what
// cudaMemGetInfo reports, every process included) past the cap fail as out of memory, and the free
// memory that planning sees (recompute auto) is counted from it.
#pragma once
#include <algorithm>
#include <cstddef>
#include <string>

#include "cuda_check.h"
#include "lighthouse/backend.h"  // OutOfMemory, format_bytes

namespace lh::cuda {

struct MemoryCap {
  size_t bytes = 0;  // 0: the whole device

  // Free and total device memory as the capped device would show them.
  void info(size_t* free_bytes, size_t* total_bytes) const {
    LH_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
    if (bytes == 0 || bytes >= *total_bytes) return;
    const size_t used = *total_bytes - *free_bytes;
    *free_bytes = bytes > used ? std::min(*free_bytes, bytes - used) : 0;
    *total_bytes = bytes;
  }
  // Throws OutOfMemory, naming what asked (`what`) and the cap, when `request` more bytes would
  // not fit under it.
  void check(size_t request, const std::string& what) const {
    if (bytes == 0) return;
    size_t free_bytes = 0, total_bytes = 0;
    LH_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const size_t used = total_bytes - free_bytes;
    if (bytes < total_bytes && used + request > bytes)
      throw OutOfMemory(what + ": " + format_bytes(request) + " more would pass the --device-memory cap of " +
                        format_bytes(bytes) + " (the device holds " + format_bytes(used) +
                        ", other processes' memory included)");
  }
};

}  // namespace lh::cuda
