// Token embedding: gather forward, deterministic scatter-add backward.
#include "vec.cuh"

namespace lh::cuda {
namespace {
using namespace detail;

// Forward: one work item = one 16-byte vector (or one element) of one output row.
// Bytes: N*C*2 read (wte rows) + N*C*2 written + N*4 tokens.
template <bool kVector>
__global__ void embedding_forward_kernel(bf16* out, const int32_t* tokens, const bf16* wte, int N, int C) {
  const int per_row = kVector ? C / kVec : C;
  const size_t total = static_cast<size_t>(N) * per_row;
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const int n = static_cast<int>(i / per_row);
    const int j = static_cast<int>(i - static_cast<size_t>(n) * per_row);
    const bf16* src = wte + static_cast<size_t>(tokens[n]) * C;
    bf16* dst = out + static_cast<size_t>(n) * C;
    if constexpr (kVector)
      reinterpret_cast<uint4*>(dst)[j] = reinterpret_cast<const uint4*>(src)[j];
    else
      dst[j] = src[j];
  }
}

// Backward. Determinism without atomics: every (vocab row v, 256-channel chunk) is owned by one
// warp, which scans ALL tokens in increasing n and adds the matching dout rows in that order, so
// the sum order is exactly the CPU reference's. The scan costs O(V * N) integer compares per
// channel chunk (V=257, N=32768: ~1M warp-wide compares per chunk, microseconds), which is why it
// is acceptable for byte vocabularies; for a 32K-token vocabulary it would grow 128x and a
// sort-based variant should replace it. Tokens are staged through shared memory in tiles (one
// coalesced global read per block instead of one per warp); each warp compacts the positions of
// its matches into a per-warp list with ballot/popc and then loads kBatch matched rows at a time,
// so several row loads are in flight even for frequent bytes (a warp's chain of matches is
// serial: its length, the frequency of the most common byte, bounds the kernel's time).
// Measured on an H200 at N=32768, C=1024, uniform tokens: ~210 us (latency-bound: one block of 8
// warps per SM). If it ever matters, split N into segments with per-segment partials in scratch
// and a second pass summing them in segment order (still deterministic).
// Bytes: N*C*2 (dout, once) + V*C*8 (dwte read+write) + ceil(V/8)*ceil(C/256)*N*4 (tokens, L2).
constexpr int kWarps = 8;      // vocab rows per block, one per warp
constexpr int kTile = 1024;    // tokens staged per step
constexpr int kChunk = 256;    // channels per warp: 32 lanes x 8
constexpr int kBatch = 8;      // matched rows loaded together

template <bool kVector>
__global__ __launch_bounds__(kWarps * 32) void embedding_backward_kernel(float* dwte, const bf16* dout,
                                                                         const int32_t* tokens, int N, int C,
                                                                         int V) {
  __shared__ int32_t tile[kTile];
  __shared__ int32_t matches[kWarps][kTile];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int v = blockIdx.x * kWarps + warp;  // v >= V: the warp still helps stage tiles
  const int c0 = blockIdx.y * kChunk;
  // Vector path: lane owns channels c0 + 8*lane .. +7. Scalar path: c0 + lane + 32*j.
  auto channel = [&](int j) { return kVector ? c0 + lane * kVec + j : c0 + lane + 32 * j; };
  const bool lane_active = kVector ? channel(0) < C : true;
  // acc starts from dwte itself, so each element is dwte + dout[n0] + dout[n1] + ... in increasing
  // n: the CPU reference's exact association (no products, so even the bits agree).
  float acc[8] = {};
  float* dst = dwte + static_cast<size_t>(min(v, V - 1)) * C;
  if (v < V && lane_active) {
    if constexpr (kVector) {
      load8(acc, dst + channel(0));
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] = channel(j) < C ? dst[channel(j)] : 0.f;
    }
  }
  for (int base = 0; base < N; base += kTile) {
    const int cnt = min(kTile, N - base);
    __syncthreads();  // previous tile fully scanned
    for (int i = threadIdx.x; i < cnt; i += blockDim.x) tile[i] = tokens[base + i];
    __syncthreads();
    if (v >= V) continue;
    int found = 0;
    for (int k = 0; k < cnt; k += 4 * 32) {  // 4 independent shared loads in flight per step
      bool hit[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) hit[u] = k + 32 * u + lane < cnt && tile[k + 32 * u + lane] == v;
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const unsigned mask = __ballot_sync(0xffffffffu, hit[u]);
        if (hit[u]) matches[warp][found + __popc(mask & ((1u << lane) - 1u))] = base + k + 32 * u + lane;
        found += __popc(mask);
      }
    }
    __syncwarp();
    for (int i = 0; i < found; i += kBatch) {
      float vals[kBatch][8];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {  // issue every load of the batch before the first add
        if (i + b < found && lane_active) {
          const bf16* row = dout + static_cast<size_t>(matches[warp][i + b]) * C;
          if constexpr (kVector) {
            load8(vals[b], row + channel(0));
          } else {
#pragma unroll
            for (int j = 0; j < 8; ++j) vals[b][j] = channel(j) < C ? __bfloat162float(row[channel(j)]) : 0.f;
          }
        }
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b)  // adds in increasing n
        if (i + b < found)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[j] += vals[b][j];
    }
    __syncwarp();  // the match list is rewritten by the next tile
  }
  if (v >= V || !lane_active) return;
  if constexpr (kVector) {
    store8(dst + channel(0), acc);
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j)
      if (channel(j) < C) dst[channel(j)] = acc[j];
  }
}
}  // namespace

void embedding_forward(bf16* out, const int32_t* tokens, const bf16* wte, int N, int C, cudaStream_t s) {
  if (N <= 0 || C <= 0) return;
  const bool vec = C % kVec == 0 && aligned16(out) && aligned16(wte);
  const size_t items = static_cast<size_t>(N) * (vec ? C / kVec : C);
  const unsigned grid = grid_for(items, 256);
  if (vec)
    embedding_forward_kernel<true><<<grid, 256, 0, s>>>(out, tokens, wte, N, C);
  else
    embedding_forward_kernel<false><<<grid, 256, 0, s>>>(out, tokens, wte, N, C);
  LH_CUDA_CHECK_LAUNCH();
}

void embedding_backward(float* dwte, const bf16* dout, const int32_t* tokens, int N, int C, int V,
                        cudaStream_t s) {
  if (N <= 0 || C <= 0 || V <= 0) return;
  const bool vec = C % kVec == 0 && aligned16(dout) && aligned16(dwte);
  const dim3 grid(ceil_div(V, kWarps), ceil_div(C, kChunk));
  if (vec)
    embedding_backward_kernel<true><<<grid, kWarps * 32, 0, s>>>(dwte, dout, tokens, N, C, V);
  else
    embedding_backward_kernel<false><<<grid, kWarps * 32, 0, s>>>(dwte, dout, tokens, N, C, V);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
