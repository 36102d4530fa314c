// The Lighthouse geometry as kernels see it: level offsets and windows precomputed on the host and
// passed by value (a few hundred bytes of kernel parameters), so device code never loops over
// powers, plus the decode of a pyramid index into (level, index within level).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "lighthouse/ops/lighthouse_geometry.h"

namespace lh::cuda::detail {

// p >= 2 and p^(L-1) <= N < 2^31 bound L by 32.
constexpr int kMaxLevels = 32;

struct DevGeo {
  int L, p;
  int64_t N;
  int64_t off[kMaxLevels + 1];  // off[l] = first pyramid index of level l; off[L] = P
  int64_t win[kMaxLevels];      // p^l

  __host__ __device__ int64_t P() const { return off[L]; }
  // Level of pyramid index j (levels are few: a linear scan beats anything clever).
  __device__ int level_of(int64_t j) const {
    int l = 0;
    while (l + 1 < L && j >= off[l + 1]) ++l;
    return l;
  }
};

inline DevGeo make_dev_geo(const lighthouse::Geometry& g) {
  g.validate();
  if (g.L > kMaxLevels) throw std::invalid_argument("lighthouse cuda: L = " + std::to_string(g.L) + " too large");
  DevGeo d{};
  d.L = g.L;
  d.p = g.p;
  d.N = g.N;
  for (int l = 0; l <= g.L; ++l) d.off[l] = g.offset(l);
  for (int l = 0; l < g.L; ++l) d.win[l] = g.window(l);
  return d;
}

inline void check_head_dim(int D, const char* op) {
  if (D <= 0 || D % 8 != 0)
    throw std::invalid_argument(std::string("lighthouse cuda ") + op + ": head dim " + std::to_string(D) +
                                " must be a positive multiple of 8 (16-byte vectors)");
}

}  // namespace lh::cuda::detail
