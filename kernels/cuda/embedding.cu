// Token embedding: gather forward, deterministic scatter-add backward.
#include <cub/device/device_radix_sort.cuh>

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

// Backward. Determinism without atomics: each (vocab row v, 256-channel chunk) is owned by one
// warp, which adds the dout rows of v's tokens onto dwte in increasing n, so the sum order is
// exactly the CPU reference's (even the bits agree: no products). Two ways to find the rows:
//   scan (V <= kScanMaxVocab): the warp scans ALL tokens, staged through shared memory in tiles,
//     and compacts its matches with ballot/popc. O(V * N) integer compares per channel chunk:
//     microseconds for bytes (V = 257), but it grows with V (measured in docs/benchmarks.md).
//   sorted (larger V): CUB's radix sort orders the token positions by token, stably (so each
//     token's positions stay in increasing n); the warp at the start of each run of equal tokens
//     adds that run. O(N log V + N * C).
// Either way a warp's rows are serial: with skewed tokens (text) the most frequent token's count
// bounds the time. The two give the same bits (GPU test).
// Bytes: N*C*2 (dout, once) + 8*C per touched row (dwte read+write) + tokens (scan:
// ceil(V/8)*ceil(C/256)*N*4 from L2; sorted: a few passes over N*8).
constexpr int kWarps = 8;      // warps per block
constexpr int kTile = 1024;    // scan: tokens staged per step
constexpr int kChunk = 256;    // channels per warp: 32 lanes x 8
constexpr int kBatch = 8;      // matched rows loaded together
constexpr int kScanMaxVocab = 512;  // about where the two cross (bench kernels: 257 and 1,024)

// The 8 channels of a warp's chunk that one lane owns. Vector path: c0 + 8*lane .. +7 (valid
// where c0 + 8*lane < C, as C % 8 == 0 there); scalar path: c0 + lane + 32*j, each checked.
template <bool kVector>
struct LaneChannels {
  int c0, lane, C;
  __device__ int operator()(int j) const { return kVector ? c0 + lane * kVec + j : c0 + lane + 32 * j; }
  __device__ bool any() const { return kVector ? (*this)(0) < C : true; }
  __device__ void load(float (&acc)[8], const float* row) const {
    if constexpr (kVector) {
      load8(acc, row + (*this)(0));
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] = (*this)(j) < C ? row[(*this)(j)] : 0.f;
    }
  }
  __device__ void load(float (&acc)[8], const bf16* row) const {
    if constexpr (kVector) {
      load8(acc, row + (*this)(0));
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] = (*this)(j) < C ? __bfloat162float(row[(*this)(j)]) : 0.f;
    }
  }
  __device__ void store(float* row, const float (&acc)[8]) const {
    if constexpr (kVector) {
      store8(row + (*this)(0), acc);
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if ((*this)(j) < C) row[(*this)(j)] = acc[j];
    }
  }
};

// acc += dout[rows[0]] + dout[rows[1]] + ... in that order, kBatch row loads in flight at a time.
// rows may point to shared or global memory.
template <bool kVector>
__device__ __forceinline__ void add_rows(float (&acc)[8], const bf16* dout, const int32_t* rows, int count,
                                         const LaneChannels<kVector>& ch) {
  for (int i = 0; i < count; i += kBatch) {
    float vals[kBatch][8];
#pragma unroll
    for (int b = 0; b < kBatch; ++b)  // issue every load of the batch before the first add
      if (i + b < count && ch.any()) ch.load(vals[b], dout + static_cast<size_t>(rows[i + b]) * ch.C);
#pragma unroll
    for (int b = 0; b < kBatch; ++b)
      if (i + b < count)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] += vals[b][j];
  }
}

template <bool kVector>
__global__ __launch_bounds__(kWarps * 32) void embedding_backward_scan_kernel(float* dwte, const bf16* dout,
                                                                              const int32_t* tokens, int N, int C,
                                                                              int V) {
  __shared__ int32_t tile[kTile];
  __shared__ int32_t matches[kWarps][kTile];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int v = blockIdx.x * kWarps + warp;  // v >= V: the warp still helps stage tiles
  const LaneChannels<kVector> ch{static_cast<int>(blockIdx.y) * kChunk, lane, C};
  // acc starts from dwte itself: dwte + dout[n0] + dout[n1] + ..., the reference's association.
  float acc[8] = {};
  float* dst = dwte + static_cast<size_t>(min(v, V - 1)) * C;
  if (v < V && ch.any()) ch.load(acc, dst);
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
    add_rows(acc, dout, matches[warp], found, ch);
    __syncwarp();  // the match list is rewritten by the next tile
  }
  if (v < V && ch.any()) ch.store(dst, acc);
}

__global__ void iota_kernel(int32_t* p, int n) {
  for (size_t i = global_thread(); i < static_cast<size_t>(n); i += grid_threads()) p[i] = static_cast<int32_t>(i);
}

// One warp per position of the sorted order; the warp at the start of a run adds the whole run.
template <bool kVector>
__global__ __launch_bounds__(kWarps * 32) void embedding_backward_runs_kernel(float* dwte, const bf16* dout,
                                                                              const int32_t* sorted_tokens,
                                                                              const int32_t* sorted_positions,
                                                                              int N, int C) {
  const int lane = threadIdx.x % 32, i = blockIdx.x * kWarps + threadIdx.x / 32;
  if (i >= N) return;
  const int v = sorted_tokens[i];
  if (i > 0 && sorted_tokens[i - 1] == v) return;  // inside a run: its first warp adds it
  int end = i + 1;  // the run's end: the first lane that sees another token, 32 positions a step
  for (;;) {
    const int j = end + lane;
    const unsigned same = __ballot_sync(0xffffffffu, j < N && sorted_tokens[j] == v);
    if (same != 0xffffffffu) {
      end += __ffs(~same) - 1;
      break;
    }
    end += 32;
  }
  const LaneChannels<kVector> ch{static_cast<int>(blockIdx.y) * kChunk, lane, C};
  float acc[8] = {};
  float* dst = dwte + static_cast<size_t>(v) * C;
  if (ch.any()) ch.load(acc, dst);
  add_rows(acc, dout, sorted_positions + i, end - i, ch);
  if (ch.any()) ch.store(dst, acc);
}

int key_bits(int V) {  // bits that hold every token id 0..V-1
  int bits = 1;
  while (bits < 31 && (1 << bits) < V) ++bits;
  return bits;
}

size_t cub_sort_bytes(int N, int V) {
  size_t bytes = 0;
  LH_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const int32_t*>(nullptr),
                                                static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                static_cast<int32_t*>(nullptr), N, 0, key_bits(V)));
  return bytes;
}

bool use_scan(int V, EmbeddingBackward path) {
  return path == EmbeddingBackward::kScan || (path == EmbeddingBackward::kAuto && V <= kScanMaxVocab);
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

size_t embedding_backward_scratch_bytes(int N, int V, EmbeddingBackward path) {
  if (N <= 0 || V <= 0 || use_scan(V, path)) return 0;
  return 3 * round_up_scratch(static_cast<size_t>(N) * sizeof(int32_t)) + cub_sort_bytes(N, V);
}

void embedding_backward(float* dwte, const bf16* dout, const int32_t* tokens, int N, int C, int V, void* scratch,
                        cudaStream_t s, EmbeddingBackward path) {
  if (N <= 0 || C <= 0 || V <= 0) return;
  const bool vec = C % kVec == 0 && aligned16(dout) && aligned16(dwte);
  if (use_scan(V, path)) {
    const dim3 grid(ceil_div(V, kWarps), ceil_div(C, kChunk));
    if (vec)
      embedding_backward_scan_kernel<true><<<grid, kWarps * 32, 0, s>>>(dwte, dout, tokens, N, C, V);
    else
      embedding_backward_scan_kernel<false><<<grid, kWarps * 32, 0, s>>>(dwte, dout, tokens, N, C, V);
    LH_CUDA_CHECK_LAUNCH();
    return;
  }
  // Scratch: sorted tokens, positions in order, sorted positions, then CUB's temporary storage.
  const size_t ints = round_up_scratch(static_cast<size_t>(N) * sizeof(int32_t));
  char* base = static_cast<char*>(scratch);
  auto* sorted_tokens = reinterpret_cast<int32_t*>(base);
  auto* positions = reinterpret_cast<int32_t*>(base + ints);
  auto* sorted_positions = reinterpret_cast<int32_t*>(base + 2 * ints);
  size_t cub_bytes = cub_sort_bytes(N, V);
  iota_kernel<<<grid_for(static_cast<size_t>(N), 256), 256, 0, s>>>(positions, N);
  LH_CUDA_CHECK_LAUNCH();
  LH_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + 3 * ints, cub_bytes, tokens, sorted_tokens, positions,
                                                sorted_positions, N, 0, key_bits(V), s));
  const dim3 grid(ceil_div(N, kWarps), ceil_div(C, kChunk));
  if (vec)
    embedding_backward_runs_kernel<true><<<grid, kWarps * 32, 0, s>>>(dwte, dout, sorted_tokens, sorted_positions,
                                                                       N, C);
  else
    embedding_backward_runs_kernel<false><<<grid, kWarps * 32, 0, s>>>(dwte, dout, sorted_tokens, sorted_positions,
                                                                        N, C);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
