// Median wall-clock timing of a synchronised region.
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

#include "lighthouse/backend.h"

namespace lh {
template <typename F>
double median_ms(Backend& be, int warmup, int iters, F&& body) {
  for (int i = 0; i < warmup; ++i) body();
  be.synchronize();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    be.synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}
}  // namespace lh
