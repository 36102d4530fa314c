// The Lighthouse geometry as kernels see it: level offsets and windows precomputed on the host and
// passed by value (a few hundred bytes of kernel parameters), so device code never loops over
// powers, plus the decode of a pyramid index into (level, index within level).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "lighthouse/ops/lighthouse_geometry.h"

namespace lh::cuda::detail {

// p >= 2 and p^(L-1) <= N < 2^31 bound L by 32.
constexpr int kMaxLevels = 32;

struct DevGeo {
  int L, p;
  int64_t N;
  int64_t off[kMaxLevels + 1];  // off[l] = first pyramid index of level l; off[L] = P
  int64_t win[kMaxLevels];      // p^l
  int shift[kMaxLevels];        // log2(p^l) when p is a power of two, else -1

  __host__ __device__ int64_t P() const { return off[L]; }
  // t / p^l: a shift for power-of-two p (the usual case), where 64-bit division would cost tens of
  // instructions per element in kernels that do little else.
  __device__ __forceinline__ int64_t div_win(int64_t t, int l) const {
    return shift[l] >= 0 ? t >> shift[l] : t / win[l];
  }
  // The same for a 32-bit position (N < 2^31, so every window fits too).
  __device__ __forceinline__ int div_win(int t, int l) const { return shift[l] >= 0 ? t >> shift[l] : t / int(win[l]); }
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
  const bool pow2 = (g.p & (g.p - 1)) == 0;
  int log2p = 0;
  while ((1 << log2p) < g.p) ++log2p;
  for (int l = 0; l < g.L; ++l) {
    d.win[l] = g.window(l);
    d.shift[l] = pow2 ? l * log2p : -1;
  }
  return d;
}

// Grid-stride loops decompose a flat item index with div/mod; in 32 bits that is a handful of
// instructions, in 64 bits tens. Runs launch(uint32_t{}) when every index (and index + grid size)
// fits in 32 bits, else launch(uint64_t{}); kernels take the index type as a template parameter.
template <typename F>
void with_index_type(size_t items, F&& launch) {
  if (items < (size_t(1) << 31)) launch(uint32_t{});
  else launch(uint64_t{});
}

// Runs launch(std::integral_constant<int, L>{}) for the depths that have compiled kernels (2..4:
// kL is a template parameter of the kernels, so that per-level registers stay registers); false,
// with nothing run, for other depths.
template <typename F>
bool with_depth(int L, F&& launch) {
  switch (L) {
    case 2: launch(std::integral_constant<int, 2>{}); return true;
    case 3: launch(std::integral_constant<int, 3>{}); return true;
    case 4: launch(std::integral_constant<int, 4>{}); return true;
    default: return false;
  }
}

// Token-major kernels (one output row per token and the row's chunks side by side: the scatter
// forward, the pyramid backward) run a block per (batch, tile of kTileTokens tokens) x (kTileThreads
// chunks of the row). A thread decodes its column once and walks the tile's tokens. The flat
// one-item-per-chunk loop they replace spent most of its instructions decoding (b, t, column) from
// the item index, which left these kernels issue-bound at a quarter of the memory bandwidth.
constexpr int kTileTokens = 16, kTileThreads = 128;

inline dim3 token_tile_grid(int B, int64_t N, int row_chunks) {
  const int64_t tiles = int64_t(B) * ((N + kTileTokens - 1) / kTileTokens);
  const int64_t column_blocks = (row_chunks + kTileThreads - 1) / kTileThreads;
  if (tiles >= (int64_t(1) << 31) || column_blocks > 65535)
    throw std::invalid_argument("lighthouse cuda: " + std::to_string(tiles) + " token tiles x " +
                                std::to_string(column_blocks) + " column blocks exceed the grid");
  return dim3(unsigned(tiles), unsigned(column_blocks));
}

struct TokenTile {
  int b;
  int64_t t0, t1;  // tokens [t0, t1) of batch row b
  int col;         // this thread's 16-byte chunk within a token's row
};

__device__ __forceinline__ TokenTile token_tile(int64_t N) {
  const int64_t per_batch = (N + kTileTokens - 1) / kTileTokens;
  TokenTile tile;
  tile.b = int(blockIdx.x / per_batch);
  tile.t0 = int64_t(blockIdx.x % per_batch) * kTileTokens;
  tile.t1 = tile.t0 + kTileTokens < N ? tile.t0 + kTileTokens : N;
  tile.col = int(blockIdx.y) * kTileThreads + int(threadIdx.x);
  return tile;
}

inline void check_head_dim(int D, const char* op) {
  if (D <= 0 || D % 8 != 0)
    throw std::invalid_argument(std::string("lighthouse cuda ") + op + ": head dim " + std::to_string(D) +
                                " must be a positive multiple of 8 (16-byte vectors)");
}

}  // namespace lh::cuda::detail
