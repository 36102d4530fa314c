// Lighthouse selection on the GPU: one thread block per (batch, query head, tile) runs the top-k
// cascade coarse to fine and the tile-local causal sort, producing exactly the CPU reference's
// index rows (kernels/cpu/lighthouse_select.cpp).
//
// Ranking. A candidate's rank key is the 64-bit (orderable(score) << 32 | ~index): larger key =
// higher score, equal scores -> lower index, which is the reference's order, and keys are unique.
// "The best 64" is then "keys >= the 64th largest key", found by an MSD radix select (8 bits per
// pass, shared-memory histograms with integer atomics: counts are exact whatever the order), so no
// candidate list is ever sorted and the chosen set is reproducible bit for bit. A pass stops early
// once the 64th key's bin holds only keys that are all taken; the result is a (prefix, mask) pair:
// chosen <=> (key & mask) >= prefix.
//
// Causal order. Each emitted entry gets an integer sort key that orders exactly like
// Geometry::sort_key and also encodes the entry: V = ((x * L + sel) * L + l), x = the integer part
// of the real key relative to the tile start (window start, or window end - 1 for a selected
// entry), sel = l for selected entries and 0 otherwise (selected keys c(i+1) - 2^-l sit between x
// and x + 1, ordered by l). A bitonic sort of these keys (shared memory, or global scratch for
// tiles too large for it) gives the causal order; each key decodes back to its pyramid index.
#include <algorithm>

#include "lighthouse_geo.cuh"
#include "lighthouse_kernels.h"
#include "vec.cuh"

namespace lh::cuda {
namespace {
using detail::DevGeo;
using lighthouse::kQuerySlots;
using lighthouse::kTileSlots;

constexpr int kThreads = 256;  // = the radix histogram's 256 bins: one bin per thread in the scan
constexpr int kBins = 256;

__device__ __forceinline__ uint32_t orderable(float f) {
  if (f == 0.0f) f = 0.0f;  // -0 ties with +0 in the reference's float comparison
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ uint64_t rank_key(const float* level_score, int64_t i) {
  return (uint64_t(orderable(level_score[i])) << 32) | uint64_t(~uint32_t(i));
}

struct Shared {
  int hist[kBins];
  int warp_total[kThreads / 32];
  int bin, k_left, bin_count;
  int n_next;
  int parents[2][kTileSlots];  // level-local indices of the selected entries, double-buffered
};

// The candidates of one level: the tile's coarsest range, or the p children of each parent.
struct Candidates {
  bool top;
  int64_t base;  // top: first index of the tile's coarsest range
  int64_t n;
  const int* parents;
  int p;
  __device__ int64_t operator()(int64_t j) const { return top ? base + j : int64_t(parents[j / p]) * p + j % p; }
};

struct Threshold {
  uint64_t prefix = 0, mask = 0;
  __device__ bool holds(uint64_t key) const { return (key & mask) >= prefix; }
};

// The `want` largest rank keys under `score` among candidates not taken by `taken` (scored by
// `taken_score`; null: none taken).
__device__ Threshold radix_select(Shared& sh, const Candidates& cand, const float* score, const float* taken_score,
                                  const Threshold& taken, int want) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  Threshold t;
  int k = want;
  for (int shift = 56; shift >= 0; shift -= 8) {
    sh.hist[tid] = 0;
    __syncthreads();
    for (int64_t j = tid; j < cand.n; j += kThreads) {
      const int64_t i = cand(j);
      if (taken_score && taken.holds(rank_key(taken_score, i))) continue;
      const uint64_t key = rank_key(score, i);
      if ((key & t.mask) == t.prefix) atomicAdd(&sh.hist[(key >> shift) & 0xFF], 1);
    }
    __syncthreads();
    // Suffix sums over bins (largest bin first): thread tid holds bin 255 - tid.
    const int bin = kBins - 1 - tid, v = sh.hist[bin];
    int incl = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += u;
    }
    if (lane == 31) sh.warp_total[warp] = incl;
    __syncthreads();
    for (int w = 0; w < warp; ++w) incl += sh.warp_total[w];
    if (incl >= k && incl - v < k) {  // exactly one bin crosses the k-th largest key
      sh.bin = bin;
      sh.k_left = k - (incl - v);
      sh.bin_count = v;
    }
    __syncthreads();
    t.prefix |= uint64_t(sh.bin) << shift;
    t.mask |= uint64_t(0xFF) << shift;
    k = sh.k_left;
    const bool all_taken = sh.bin_count == k;
    __syncthreads();  // everyone has read sh before the next pass overwrites it
    if (all_taken) break;
  }
  return t;
}

__device__ __forceinline__ uint64_t causal_key(const DevGeo& g, int l, int64_t i, bool selected, int64_t tile_start) {
  const int64_t c = g.win[l];
  const int64_t x = (selected ? c * (i + 1) - 1 : c * i) - tile_start;
  return (uint64_t(x) * g.L + (selected ? l : 0)) * g.L + l;
}

__device__ __forceinline__ int32_t decode_key(const DevGeo& g, uint64_t v, int64_t tile_start) {
  const int l = int(v % g.L);
  const uint64_t q = v / g.L;
  const bool selected = (q % g.L) != 0;
  const int64_t x = int64_t(q / g.L) + tile_start, c = g.win[l];
  const int64_t i = selected ? (x + 1) / c - 1 : x / c;
  return int32_t(g.off[l] + i);
}

__device__ void bitonic_sort(uint64_t* buf, int n) {
  // Unsigned k: for n = 2^30 an int k would overflow after its last round and never end the loop.
  for (unsigned k = 2; k <= unsigned(n); k <<= 1)
    for (unsigned j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < n; i += kThreads) {
        const int ixj = i ^ int(j);
        if (ixj > i) {
          const uint64_t a = buf[i], b = buf[ixj];
          if ((a > b) == ((i & k) == 0)) buf[i] = b, buf[ixj] = a;
        }
      }
      __syncthreads();
    }
}

__global__ void __launch_bounds__(kThreads) select_kernel(int32_t* idx, const float* sq, const float* sk, int H,
                                                          int Hkv, int tiles, int64_t C, int E, int E2, DevGeo g,
                                                          uint64_t* global_buf) {
  extern __shared__ uint64_t shared_buf[];
  __shared__ Shared sh;
  const int64_t block = blockIdx.x;
  const int tile = int(block % tiles);
  const int64_t bh = block / tiles;  // b * H + h
  const int b = int(bh / H), h = int(bh % H);
  const int64_t P = g.P(), S = int64_t(tiles) * E;
  const float* q_row = sq + bh * P;
  const float* k_row = sk + (int64_t(b) * Hkv + h / (H / Hkv)) * P;
  uint64_t* buf = global_buf ? global_buf + block * E2 : shared_buf;
  const int top = g.L - 1, fine = kTileSlots * g.p;
  const int64_t tile_start = int64_t(tile) * (g.N / tiles);

  int cur = 0;
  int64_t slot = 0;  // where this level's candidates are emitted in buf
  for (int l = top; l >= 1; --l) {
    const Candidates cand{l == top, int64_t(tile) * C, l == top ? C : fine, sh.parents[cur], g.p};
    const float *ql = q_row + g.off[l], *kl = k_row + g.off[l];
    const Threshold by_q = radix_select(sh, cand, ql, nullptr, Threshold{}, kQuerySlots);
    const Threshold by_k = radix_select(sh, cand, kl, ql, by_q, kTileSlots - kQuerySlots);
    if (threadIdx.x == 0) sh.n_next = 0;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < cand.n; j += kThreads) {
      const int64_t i = cand(j);
      const bool chosen = by_q.holds(rank_key(ql, i)) || by_k.holds(rank_key(kl, i));
      buf[slot + j] = causal_key(g, l, i, chosen, tile_start);
      // The parents' order is scheduling-dependent; only the set matters (the final sort orders
      // by unique keys).
      if (chosen) sh.parents[cur ^ 1][atomicAdd(&sh.n_next, 1)] = int(i);
    }
    __syncthreads();
    slot += cand.n;
    cur ^= 1;
  }
  for (int j = threadIdx.x; j < fine; j += kThreads) {
    const int64_t i = int64_t(sh.parents[cur][j / g.p]) * g.p + j % g.p;
    buf[slot + j] = causal_key(g, 0, i, false, tile_start);
  }
  for (int j = E + threadIdx.x; j < E2; j += kThreads) buf[j] = ~uint64_t(0);  // padding sorts last
  __syncthreads();
  bitonic_sort(buf, E2);
  int32_t* out = idx + bh * S + int64_t(tile) * E;
  for (int r = threadIdx.x; r < E; r += kThreads) out[r] = decode_key(g, buf[r], tile_start);
}

struct Plan {
  int E, E2;
  size_t shared_bytes;  // 0: the sort buffer lives in global scratch
};

Plan plan_for(const Geometry& g) {
  Plan pl{};
  pl.E = int(g.coarse_per_tile() + int64_t(g.L - 1) * g.p * kTileSlots);
  pl.E2 = 1;
  while (pl.E2 < pl.E) pl.E2 <<= 1;
  int dev = 0, optin = 0;
  LH_CUDA_CHECK(cudaGetDevice(&dev));
  LH_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  const size_t want = size_t(pl.E2) * sizeof(uint64_t);
  pl.shared_bytes = want + sizeof(Shared) + 1024 <= size_t(optin) ? want : 0;
  return pl;
}

}  // namespace

size_t lighthouse_select_scratch_bytes(int B, int H, const Geometry& g) {
  g.validate();
  const Plan pl = plan_for(g);
  return pl.shared_bytes ? 0 : size_t(B) * H * g.tiles() * pl.E2 * sizeof(uint64_t);
}

void lighthouse_select(int32_t* idx, const float* sq, const float* sk, int B, int H, int Hkv, const Geometry& geo,
                       void* scratch, cudaStream_t s) {
  if (Hkv < 1 || H % Hkv != 0) throw std::invalid_argument("lighthouse select: H is not a multiple of Hkv");
  const DevGeo g = detail::make_dev_geo(geo);
  const Plan pl = plan_for(geo);
  if (!pl.shared_bytes && !scratch) throw std::logic_error("lighthouse select: scratch buffer missing");
  allow_dynamic_shared_memory(select_kernel, pl.shared_bytes);
  const size_t blocks = size_t(B) * H * geo.tiles();
  select_kernel<<<unsigned(blocks), kThreads, pl.shared_bytes, s>>>(
      idx, sq, sk, H, Hkv, geo.tiles(), geo.coarse_per_tile(), pl.E, pl.E2, g,
      pl.shared_bytes ? nullptr : static_cast<uint64_t*>(scratch));
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
