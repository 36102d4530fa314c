// Lighthouse pyramid (mean pooling of the post-RoPE q, k, v) forward and backward, and the norm
// scores; plus the fused variants the layer uses, which treat qkv itself as level 0. Every 8-element
// output chunk (or score) has a single writer that sums its inputs in a fixed order, so results do
// not depend on the grid; grids and index arithmetic are sized for any N (64-bit where needed).
#include "lighthouse/ops/lighthouse_reference.h"
#include "lighthouse_geo.cuh"
#include "lighthouse_kernels.h"
#include "vec.cuh"

#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace lh::cuda {
namespace {
using detail::DevGeo;

// The fused row of a token holds H query heads, then Hkv key, then Hkv value heads; column hh of
// that row belongs to one of the three pyramids: the start of that (b, head)'s pyramid.
template <typename Ptr>
__device__ __forceinline__ Ptr part_row(Ptr q, Ptr k, Ptr v, int H, int Hkv, int b, int hh, int64_t P, int D) {
  if (hh < H) return q + (int64_t(b) * H + hh) * P * D;
  if (hh < H + Hkv) return k + (int64_t(b) * Hkv + hh - H) * P * D;
  return v + (int64_t(b) * Hkv + hh - H - Hkv) * P * D;
}

// Entry j of the pyramid of (b, column hh) = mean of the window's base vectors, accumulated in
// fp32 in increasing t and scaled by 1/c (a power of two: exact).
// Entries j >= first only (first = N: the coarse levels).
template <typename I>
__global__ void pyramid_forward_kernel(bf16* qp, bf16* kp, bf16* vp, const bf16* qkv, int B, int H, int Hkv, int D,
                                       DevGeo g, int64_t first) {
  const int HX = H + 2 * Hkv, V = D / detail::kVec;
  const int64_t P = g.P();
  const I span = I(P - first), items = I(B) * I(HX) * span * I(V);
  for (I it = I(detail::global_thread()); it < items; it += I(detail::grid_threads())) {
    const int chunk = int(it % I(V));
    const I r = it / I(V);
    const int64_t j = first + int64_t(r % span);
    const int row = int(r / span), b = row / HX, hh = row % HX;
    const int l = g.level_of(j);
    const int64_t c = g.win[l], i = j - g.off[l];
    const size_t stride = size_t(HX) * D;
    const bf16* src = qkv + (size_t(b) * g.N + size_t(c * i)) * stride + size_t(hh) * D + chunk * detail::kVec;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, x[8];
    for (int64_t t = 0; t < c; ++t) {
      detail::load8(x, src + size_t(t) * stride);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += x[e];
    }
    const float inv = 1.0f / float(c);
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= inv;
    bf16* dst = part_row(qp, kp, vp, H, Hkv, b, hh, P, D);
    detail::store8(dst + j * D + chunk * detail::kVec, acc);
  }
}

static_assert(lighthouse::kNormChunk == detail::kVec, "a norm-score chunk is one 16-byte vector");

// The squares of one 8-element chunk accumulated by fp32 fused multiply-adds in increasing d.
__device__ __forceinline__ float chunk_square_sum(const float (&x)[8]) {
  float acc = 0.0f;
#pragma unroll
  for (int e = 0; e < 8; ++e) acc = __fmaf_rn(x[e], x[e], acc);
  return acc;
}

// The reference's pairwise sum of n chunk sums (neighbours, then pairs of pairs, ...), over kSlots
// slots (a power of two >= n) that are zero beyond n: adding zeros changes no bits. Fully unrolled,
// so the slots stay in registers. chunk(c) returns the sum of chunk c < n.
template <int kSlots, typename Chunk>
__device__ __forceinline__ float pairwise_sum(int n, Chunk chunk) {
  float part[kSlots];
#pragma unroll
  for (int c = 0; c < kSlots; ++c) part[c] = c < n ? chunk(c) : 0.0f;
#pragma unroll
  for (int span = 1; span < kSlots; span *= 2)
#pragma unroll
    for (int c = 0; c < kSlots; c += 2 * span) part[c] = __fadd_rn(part[c], part[c + span]);
  return part[0];
}

// Where a fused-row column's level-0 scores go: query heads to sq [B, H, P], key heads to sk
// [B, Hkv, P]; value heads have none (null).
__device__ __forceinline__ float* score_row(float* sq, float* sk, int H, int Hkv, int b, int hh, int64_t P) {
  if (!sq || hh >= H + Hkv) return nullptr;
  return hh < H ? sq + (int64_t(b) * H + hh) * P : sk + (int64_t(b) * Hkv + hh - H) * P;
}

constexpr int kThreads = 256;
// The fused scores: a column's V = D / 8 lanes (a power of two <= kMaxScoreLanes, so they are an
// aligned group in one warp) each hold one chunk of a row. They park their chunk sums of R =
// min(V, p^(L-1)) rows in shared memory; then lane j adds up row j's chunk sums and takes the
// root. That is one pairwise sum and one square root per row, instead of shuffles and a root in
// every lane. Rows are padded by one float so that lane j reading row j hits distinct banks.
constexpr int kMaxScoreLanes = 16;  // head dims up to 128
constexpr int kScoreScratch = kThreads * (kMaxScoreLanes + 1);  // floats per block

// Levels 1..L-1 in one pass over the base: one thread per (coarsest window, head column, chunk)
// reads the window's p^(L-1) base rows once, keeping a running sum per level that is stored (times
// 1/c) whenever that level's window closes. Each level adds the same values in the same order as
// pyramid_forward_kernel, so the entries are bit-identical; but the base is read once instead of
// once per level, and level 0 (a copy of the base) is not written at all. kL is a template
// parameter so that the sums take exactly the registers they need (a generic version used 136
// registers, i.e. one block per SM, and ran slower than re-reading the base per level); rows are
// loaded kBatch at a time, as raw 16-byte vectors, so each thread keeps several loads in flight.
// kScores: the same pass writes the norm scores of the query and key columns (see kMaxScoreLanes);
// levels >= 1 take window maxima by shuffles across the round's lanes, or across rounds in lane 0.
template <typename I, int kL, int kBatch, bool kScores>
__global__ __launch_bounds__(kThreads) void coarse_pyramid_kernel(bf16* qp, bf16* kp, bf16* vp, float* sq, float* sk,
                                                                  const bf16* qkv, int B, int H, int Hkv, int D,
                                                                  DevGeo g) {
  __shared__ float score_scratch[kScores ? kScoreScratch : 1];
  const int HX = H + 2 * Hkv, V = D / detail::kVec, top = int(g.win[kL - 1]), R = min(V, top);
  const int64_t P = g.P();
  const I windows = I(g.N / top), items = I(B) * windows * I(HX) * I(V);
  const unsigned lanes = V >= 32 ? 0xffffffffu : ((1u << V) - 1) << (threadIdx.x & 31 & ~unsigned(V - 1));
  float* rows = score_scratch + (kScores ? (threadIdx.x / V) * V * (V + 1) : 0);  // this column group's
  for (I it = I(detail::global_thread()); it < items; it += I(detail::grid_threads())) {
    // Chunks, then heads fastest: a warp reads 512 contiguous bytes of one token row.
    const int chunk = int(it % I(V));
    I r = it / I(V);
    const int hh = int(r % I(HX));
    r /= I(HX);
    const int64_t w = int64_t(r % windows);
    const int b = int(r / windows);
    const size_t stride = size_t(HX) * D;
    const bf16* src = qkv + (size_t(b) * g.N + size_t(w * top)) * stride + size_t(hh) * D + chunk * detail::kVec;
    bf16* dst = part_row(qp, kp, vp, H, Hkv, b, hh, P, D) + chunk * detail::kVec;
    float* score = kScores ? score_row(sq, sk, H, Hkv, b, hh, P) : nullptr;  // uniform over the group
    float acc[kL - 1][8], window_max[kL - 1];
#pragma unroll
    for (int l = 0; l < kL - 1; ++l) {
      window_max[l] = 0.0f;  // norms are >= 0
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[l][e] = 0.0f;
    }
    for (int t0 = 0; t0 < top; t0 += kBatch) {
      uint4 raw[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) raw[u] = *reinterpret_cast<const uint4*>(src + size_t(t0 + u) * stride);
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        float x[8];
        detail::unpack8(x, raw[u]);
        const int t = t0 + u;  // base row within the window
#pragma unroll
        for (int l = 0; l < kL - 1; ++l) {
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[l][e] += x[e];
          // Windows are powers of two (p is): masks and shifts, not division.
          const int c = int(g.win[l + 1]);
          if (((t + 1) & (c - 1)) == 0) {
            const float inv = 1.0f / float(c);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[l][e] *= inv;
            detail::store8(dst + (g.off[l + 1] + ((w * top + t + 1) >> g.shift[l + 1]) - 1) * D, acc[l]);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[l][e] = 0.0f;
          }
        }
        if (!kScores || !score) continue;
        rows[(t & (R - 1)) * (V + 1) + chunk] = chunk_square_sum(x);
        if (((t + 1) & (R - 1)) != 0) continue;
        // The round's R rows are parked: lane j < R scores row first + j.
        __syncwarp(lanes);
        const int64_t first = w * top + t + 1 - R;
        float norm = 0.0f;  // lanes >= R keep 0: below every norm
        if (chunk < R) {
          const float* row = rows + chunk * (V + 1);
          norm = __fsqrt_rn(pairwise_sum<kMaxScoreLanes>(V, [&](int c) { return row[c]; }));
          score[first + chunk] = norm;
        }
        __syncwarp(lanes);  // the next round may overwrite the parked sums
        // Window maxima, coarse levels in order: windows nest, so each level's butterfly goes on
        // from the previous one's.
        float m = norm;
        int span = 1;
#pragma unroll
        for (int l = 1; l < kL; ++l) {
          const int c = int(g.win[l]);
          for (; span < min(c, R); span <<= 1) m = fmaxf(m, __shfl_xor_sync(lanes, m, span));
          if (c <= R) {  // whole windows inside the round: their first lane stores
            if (chunk < R && (chunk & (c - 1)) == 0) score[g.off[l] + ((first + chunk) >> g.shift[l])] = m;
          } else if (chunk == 0) {  // a window spans rounds: lane 0 keeps its running max
            window_max[l - 1] = fmaxf(window_max[l - 1], m);
            if (((t + 1) & (c - 1)) == 0) {
              score[g.off[l] + ((w * top + t + 1) >> g.shift[l]) - 1] = window_max[l - 1];
              window_max[l - 1] = 0.0f;
            }
          }
        }
      }
    }
  }
}

// The pulled gradients of one fused-row column: the column's part of the sub-sequence gradients
// (chunk applied) and its group of query heads (a query head is its own group; a kv head serves
// G = H / Hkv). Addresses are a per-head base plus one 32 x 32 -> 64-bit multiply: the pulling
// kernels are issue-bound.
struct EntryPuller {
  const int32_t* __restrict__ pos;  // the group's first head's inverse index [P]
  const bf16* __restrict__ sub;     // the group's first head's sub-sequence gradients, this chunk
  size_t head_pos, head_sub;        // strides between the group's heads
  int heads, D;

  // The gradient of pyramid entry j as the gather backward stores it in dpyr: the group's heads in
  // ascending order, each head's sub-sequence row (if it emitted the entry), summed in fp32 and
  // rounded to bf16. A one-head column (query columns; all columns without GQA) needs no head loop,
  // and its value is a bf16 already, which rounding would leave as it is.
  __device__ __forceinline__ void grad(float (&out)[8], unsigned j) const {
    float sum[8] = {0, 0, 0, 0, 0, 0, 0, 0}, x[8];  // +0 + x, not x: -0 becomes +0 as in a sum
    if (heads == 1) {
      const int32_t at = pos[j];
      if (at >= 0) {
        detail::load8_readonly(x, sub + size_t(unsigned(at)) * unsigned(D));
#pragma unroll
        for (int k = 0; k < 8; ++k) sum[k] += x[k];
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) out[k] = sum[k];
      return;
    }
#pragma unroll 1
    for (int h = 0; h < heads; ++h) {
      const int32_t at = pos[h * head_pos + j];
      if (at < 0) continue;
      detail::load8_readonly(x, sub + h * head_sub + size_t(unsigned(at)) * unsigned(D));
#pragma unroll
      for (int k = 0; k < 8; ++k) sum[k] += x[k];
    }
#pragma unroll
    for (int k = 0; k < 8; ++k) out[k] = __bfloat162float(__float2bfloat16_rn(sum[k]));
  }
};

// A pyramid backward thread's column: a token tile (detail::token_tile), the 16-byte chunk `chunk`
// of fused-row column hh, where its first output goes, and (with z.pos) its pulled gradients.
struct TileColumn {
  detail::TokenTile tile;
  int hh, chunk;
  bf16* out;   // dqkv at (b, t0, hh, chunk); advances by `row` per token
  size_t row;  // bf16 elements per token in dqkv
  EntryPuller pull;
};

// False for the threads past the last column.
__device__ __forceinline__ bool tile_column(TileColumn& c, bf16* dqkv, int H, int Hkv, int D, const DevGeo& g,
                                            const Level0Grads& z) {
  const int HX = H + 2 * Hkv, V = D / detail::kVec;
  c.tile = detail::token_tile(g.N);
  if (c.tile.col >= HX * V) return false;
  c.hh = c.tile.col / V;
  c.chunk = c.tile.col % V;
  c.row = size_t(HX) * D;
  c.out = dqkv + (size_t(c.tile.b) * g.N + size_t(c.tile.t0)) * c.row + size_t(c.hh) * D + c.chunk * detail::kVec;
  c.pull = {};
  if (!z.pos) return true;
  const int G = H / Hkv, hh = c.hh;
  const bf16* dsub = (hh < H ? z.dq : hh < H + Hkv ? z.dk : z.dv) + c.chunk * detail::kVec;
  const int x0 = hh < H ? hh : (hh < H + Hkv ? hh - H : hh - H - Hkv) * G;
  const size_t bh0 = size_t(c.tile.b) * H + x0;
  c.pull = {z.pos + bh0 * g.P(), dsub + bh0 * z.S * D, size_t(g.P()), size_t(z.S) * D, hh < H ? 1 : G, D};
  return true;
}

// dqkv[b, t, column hh] = sum over levels (ascending) of dpyr(l, t / c) / c. With z.pos set, the
// level-0 term is not read from dpyr (whose level-0 rows are then never written) but pulled
// straight from the sub-sequence gradients, as gather_backward_kernel would have written it: the
// group's heads in ascending order, summed in fp32 and rounded to bf16. Same bits, one pass less.
// Token-major (detail::token_tile): a thread owns chunk `col` of one fused-row column hh for a tile
// of tokens.
__global__ __launch_bounds__(detail::kTileThreads) void pyramid_backward_kernel(bf16* dqkv, const bf16* dq,
                                                                              const bf16* dk, const bf16* dv, int H,
                                                                              int Hkv, int D, DevGeo g,
                                                                              Level0Grads z) {
  TileColumn c;
  if (!tile_column(c, dqkv, H, Hkv, D, g, z)) return;
  const bf16* src = part_row(dq, dk, dv, H, Hkv, c.tile.b, c.hh, g.P(), D) + c.chunk * detail::kVec;
  // The kernel is issue-bound, so per-token index arithmetic is 32-bit (tokens < N < 2^31, pyramid
  // entries < P < 2^31: Geometry::validate) and the output pointer advances by a row per token.
  for (int t = int(c.tile.t0); t < int(c.tile.t1); ++t, c.out += c.row) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, x[8];
    int first_level = 0;
    if (z.pos) {
      c.pull.grad(acc, unsigned(t));  // as stored in dpyr
      first_level = 1;
    }
    for (int l = first_level; l < g.L; ++l) {
      const float inv = __frcp_rn(float(g.win[l]));  // = 1.0f / win, correctly rounded, without a division
      const unsigned entry = unsigned(g.off[l]) + unsigned(g.div_win(t, l));
      detail::load8(x, src + size_t(entry) * D);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] += x[e] * inv;
    }
    detail::store8(c.out, acc);
  }
}

// The same sums with every level pulled from the sub-sequence gradients, so that no coarse dpyr
// is written by a gather backward first. A coarse entry serves p^l consecutive tokens: the thread
// pulls it when its token walk enters the entry's window and keeps it in registers (kL is a
// template parameter so that they stay registers). The walk is the same for every thread of a
// warp, so the refresh branches are uniform. Issue-bound, like pyramid_backward_kernel.
template <int kL>
__global__ __launch_bounds__(detail::kTileThreads) void pyramid_backward_pull_kernel(bf16* __restrict__ dqkv, int H,
                                                                                   int Hkv, int D, DevGeo g,
                                                                                   Level0Grads z) {
  TileColumn c;
  if (!tile_column(c, dqkv, H, Hkv, D, g, z)) return;
  float coarse[kL - 1][8], inv[kL - 1];
  int entry[kL - 1];
#pragma unroll
  for (int l = 1; l < kL; ++l) entry[l - 1] = -1, inv[l - 1] = __frcp_rn(float(g.win[l]));
  for (int t = int(c.tile.t0); t < int(c.tile.t1); ++t, c.out += c.row) {
#pragma unroll
    for (int l = 1; l < kL; ++l) {
      const int e = g.div_win(t, l);
      if (e != entry[l - 1]) {
        entry[l - 1] = e;
        c.pull.grad(coarse[l - 1], unsigned(g.off[l]) + unsigned(e));
      }
    }
    float acc[8];
    c.pull.grad(acc, unsigned(t));
#pragma unroll
    for (int l = 1; l < kL; ++l)
#pragma unroll
      for (int k = 0; k < 8; ++k) acc[k] += coarse[l - 1][k] * inv[l - 1];
    detail::store8(c.out, acc);
  }
}

// One thread per base position: the whole row in the CPU reference's order (fp32 chunk sums, then
// pairwise). Identical float scores on both backends mean identical selections. Row (b, x), position
// t of the source is src + b * sb + x * sx + t * st: a pyramid's level 0, or qkv itself.
// kHeadsFastest: consecutive threads take consecutive heads of one position (contiguous in qkv's
// fused rows) instead of consecutive positions of one head (contiguous in a pyramid).
// A block's kNormRows rows are first staged in shared memory by all its threads, V per row, so
// that global loads are 256-byte coalesced runs; a thread reading its own row straight from global
// memory made every load instruction touch 32 sectors and ran at half the bandwidth. Rows in
// shared memory are padded by 16 bytes, so the threads' 16-byte reads of one step hit distinct banks.
constexpr int kNormRows = 128;
constexpr int kMaxNormChunks = 32;  // head dims up to 256

__host__ __device__ constexpr int norm_row_stride(int D) { return D + detail::kVec; }  // bf16 elements

template <bool kHeadsFastest>
__device__ __forceinline__ void norm_item(int64_t it, int Hx, int64_t N, size_t& row, int64_t& t) {
  if (kHeadsFastest) {
    const int64_t bt = it / Hx;
    t = bt % N;
    row = size_t(bt / N) * Hx + size_t(it % Hx);
  } else {
    row = size_t(it / N);
    t = it % N;
  }
}

template <bool kHeadsFastest>
__global__ __launch_bounds__(kNormRows) void level0_norm_kernel(float* score, const bf16* src, int Hx, int rows,
                                                                int D, int64_t sb, int64_t sx, int64_t st, DevGeo g) {
  extern __shared__ uint4 staged_raw[];
  bf16* staged = reinterpret_cast<bf16*>(staged_raw);
  __shared__ const bf16* row_start[kNormRows];
  const unsigned V = D / detail::kVec, stride = norm_row_stride(D);
  const int64_t items = int64_t(rows) * g.N, first = int64_t(blockIdx.x) * kNormRows;
  const int count = int(min(int64_t(kNormRows), items - first));
  // Each thread decodes its own row once (64-bit divisions are expensive), then all stage all rows.
  size_t row = 0;
  int64_t t = 0;
  if (int(threadIdx.x) < count) {
    norm_item<kHeadsFastest>(first + threadIdx.x, Hx, g.N, row, t);
    row_start[threadIdx.x] = src + int64_t(row / Hx) * sb + int64_t(row % Hx) * sx + t * st;
  }
  __syncthreads();
  constexpr int kInFlight = 4;  // loads issued before their stores: one load at a time cannot fill HBM
  const unsigned chunks = unsigned(count * V);
  for (unsigned c0 = threadIdx.x; c0 < chunks; c0 += kInFlight * kNormRows) {
    uint4 buf[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const unsigned c = c0 + u * kNormRows;
      if (c < chunks) buf[u] = *reinterpret_cast<const uint4*>(row_start[c / V] + (c % V) * detail::kVec);
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const unsigned c = c0 + u * kNormRows;
      if (c < chunks) *reinterpret_cast<uint4*>(staged + (c / V) * stride + (c % V) * detail::kVec) = buf[u];
    }
  }
  __syncthreads();
  if (int(threadIdx.x) >= count) return;
  const bf16* x = staged + threadIdx.x * stride;
  const float sum = pairwise_sum<kMaxNormChunks>(D / detail::kVec, [&](int c) {
    float v[8];
    detail::load8(v, x + c * detail::kVec);
    return chunk_square_sum(v);
  });
  score[row * g.P() + t] = __fsqrt_rn(sum);
}

// Levels >= 1: the max of the level-0 scores inside the window (max is exact: order-free).
__global__ void window_max_kernel(float* score, int rows, DevGeo g) {
  const int64_t P = g.P(), coarse = P - g.N;
  const size_t items = size_t(rows) * coarse;
  for (size_t it = detail::global_thread(); it < items; it += detail::grid_threads()) {
    const size_t row = it / coarse;
    const int64_t j = g.N + int64_t(it % coarse);
    const int l = g.level_of(j);
    const int64_t c = g.win[l], i = j - g.off[l];
    const float* base = score + row * P + c * i;
    float m = base[0];
    for (int64_t t = 1; t < c; ++t) m = fmaxf(m, base[t]);
    score[row * P + j] = m;
  }
}

}  // namespace

namespace {
void pyramid_entries(bf16* qpyr, bf16* kpyr, bf16* vpyr, const bf16* qkv, int B, int H, int Hkv, int D,
                     const DevGeo& g, int64_t first, cudaStream_t s) {
  const size_t items = size_t(B) * (H + 2 * Hkv) * (g.P() - first) * (D / detail::kVec);
  if (items == 0) return;
  detail::with_index_type(items, [&](auto index) {
    pyramid_forward_kernel<decltype(index)><<<detail::grid_for(items, kThreads), kThreads, 0, s>>>(
        qpyr, kpyr, vpyr, qkv, B, H, Hkv, D, g, first);
  });
  LH_CUDA_CHECK_LAUNCH();
}

void level0_norm(float* score, const bf16* src, int Hx, int rows, int D, int64_t sb, int64_t sx, int64_t st,
                 const DevGeo& g, cudaStream_t s) {
  if (D > kMaxNormChunks * detail::kVec)
    throw std::invalid_argument("lighthouse cuda norm_scores: head dim " + std::to_string(D) + " above " +
                                std::to_string(kMaxNormChunks * detail::kVec));
  const int64_t items = int64_t(rows) * g.N;
  if (items == 0) return;
  const int64_t blocks = (items + kNormRows - 1) / kNormRows;
  if (blocks >= (int64_t(1) << 31)) throw std::invalid_argument("lighthouse cuda norm_scores: too many rows");
  const size_t smem = size_t(kNormRows) * norm_row_stride(D) * sizeof(bf16);
  const bool heads_fastest = sx < st;  // heads are closer together than positions (qkv rows)
  auto launch = [&](auto kernel) {
    allow_dynamic_shared_memory(kernel, smem);  // large head dims (184 and up with the row table)
    kernel<<<unsigned(blocks), kNormRows, smem, s>>>(score, src, Hx, rows, D, sb, sx, st, g);
  };
  if (heads_fastest) launch(level0_norm_kernel<true>);
  else launch(level0_norm_kernel<false>);
  LH_CUDA_CHECK_LAUNCH();
}

void window_max(float* score, int rows, const DevGeo& g, cudaStream_t s) {
  const size_t n1 = size_t(rows) * (g.P() - g.N);
  if (n1 == 0) return;
  window_max_kernel<<<detail::grid_for(n1, kThreads), kThreads, 0, s>>>(score, rows, g);
  LH_CUDA_CHECK_LAUNCH();
}
}  // namespace

void lighthouse_pyramid_forward(bf16* qpyr, bf16* kpyr, bf16* vpyr, const bf16* qkv, int B, int H, int Hkv, int D,
                                const Geometry& geo, cudaStream_t s) {
  detail::check_head_dim(D, "pyramid_forward");
  pyramid_entries(qpyr, kpyr, vpyr, qkv, B, H, Hkv, D, detail::make_dev_geo(geo), 0, s);
}

void lighthouse_coarse_pyramid_per_entry(bf16* qpyr, bf16* kpyr, bf16* vpyr, const bf16* qkv, int B, int H, int Hkv,
                                         int D, const Geometry& geo, cudaStream_t s) {
  detail::check_head_dim(D, "coarse_pyramid_forward");
  const DevGeo g = detail::make_dev_geo(geo);
  pyramid_entries(qpyr, kpyr, vpyr, qkv, B, H, Hkv, D, g, g.N, s);
}

namespace {
// The one-pass coarse kernel for depths 2..4 (false for others: nothing launched); with sq and sk
// set, it writes the norm scores as well (the caller checked norm_lanes_fit_warp(D)).
bool launch_coarse_pyramid(bf16* qpyr, bf16* kpyr, bf16* vpyr, float* sq, float* sk, const bf16* qkv, int B, int H,
                           int Hkv, int D, const DevGeo& g, cudaStream_t s) {
  if (g.L < 2 || g.shift[1] < 0) return false;  // its window arithmetic takes p a power of two
  const int64_t top = g.win[g.L - 1];
  const size_t items = size_t(B) * (g.N / top) * (H + 2 * Hkv) * (D / detail::kVec);
  const unsigned grid = detail::grid_for(items, kThreads);
  bool launched = false;
  detail::with_index_type(items, [&](auto index) {
    using I = decltype(index);
    launched = detail::with_depth(g.L, [&](auto levels) {
      constexpr int kL = decltype(levels)::value;
      auto run = [&](auto kernel) { kernel<<<grid, kThreads, 0, s>>>(qpyr, kpyr, vpyr, sq, sk, qkv, B, H, Hkv, D, g); };
      // top = p^(L-1) is a multiple of p >= 2, so rows are loaded 4 or 2 at a time.
      if (top % 4 == 0) sq ? run(coarse_pyramid_kernel<I, kL, 4, true>) : run(coarse_pyramid_kernel<I, kL, 4, false>);
      else sq ? run(coarse_pyramid_kernel<I, kL, 2, true>) : run(coarse_pyramid_kernel<I, kL, 2, false>);
    });
  });
  if (launched) LH_CUDA_CHECK_LAUNCH();
  return launched;
}

// Whether the fused scores handle head dim D: a column's D / 8 chunk lanes must form an aligned
// group inside one warp and fit the shared scratch.
bool norm_lanes_fit_warp(int D) {
  const int V = D / detail::kVec;
  return V <= kMaxScoreLanes && (V & (V - 1)) == 0;
}
}  // namespace

void lighthouse_coarse_pyramid_forward(bf16* qpyr, bf16* kpyr, bf16* vpyr, const bf16* qkv, int B, int H, int Hkv,
                                       int D, const Geometry& geo, cudaStream_t s) {
  detail::check_head_dim(D, "coarse_pyramid_forward");
  const DevGeo g = detail::make_dev_geo(geo);
  if (!launch_coarse_pyramid(qpyr, kpyr, vpyr, nullptr, nullptr, qkv, B, H, Hkv, D, g, s) && g.L > 1)
    pyramid_entries(qpyr, kpyr, vpyr, qkv, B, H, Hkv, D, g, g.N, s);  // other depths
}

void lighthouse_coarse_pyramid_scores_forward(bf16* qpyr, bf16* kpyr, bf16* vpyr, float* sq, float* sk,
                                              const bf16* qkv, int B, int H, int Hkv, int D, const Geometry& geo,
                                              cudaStream_t s) {
  detail::check_head_dim(D, "coarse_pyramid_scores_forward");
  if (norm_lanes_fit_warp(D) &&
      launch_coarse_pyramid(qpyr, kpyr, vpyr, sq, sk, qkv, B, H, Hkv, D, detail::make_dev_geo(geo), s))
    return;
  lighthouse_coarse_pyramid_forward(qpyr, kpyr, vpyr, qkv, B, H, Hkv, D, geo, s);
  lighthouse_norm_scores_qkv(sq, sk, qkv, B, H, Hkv, D, geo, s);
}

void lighthouse_pyramid_backward(bf16* dqkv, const bf16* dqpyr, const bf16* dkpyr, const bf16* dvpyr, int B, int H,
                                 int Hkv, int D, const Geometry& geo, cudaStream_t s, const Level0Grads& level0) {
  detail::check_head_dim(D, "pyramid_backward");
  const DevGeo g = detail::make_dev_geo(geo);
  const int row_chunks = (H + 2 * Hkv) * (D / detail::kVec);
  pyramid_backward_kernel<<<detail::token_tile_grid(B, g.N, row_chunks), detail::kTileThreads, 0, s>>>(
      dqkv, dqpyr, dkpyr, dvpyr, H, Hkv, D, g, level0);
  LH_CUDA_CHECK_LAUNCH();
}

bool lighthouse_pyramid_backward_pulled(bf16* dqkv, int B, int H, int Hkv, int D, const Geometry& geo,
                                        const Level0Grads& grads, cudaStream_t s) {
  detail::check_head_dim(D, "pyramid_backward_pulled");
  const DevGeo g = detail::make_dev_geo(geo);
  const dim3 grid = detail::token_tile_grid(B, g.N, (H + 2 * Hkv) * (D / detail::kVec));
  const bool launched = detail::with_depth(g.L, [&](auto levels) {
    constexpr int kL = decltype(levels)::value;
    pyramid_backward_pull_kernel<kL><<<grid, detail::kTileThreads, 0, s>>>(dqkv, H, Hkv, D, g, grads);
  });
  if (launched) LH_CUDA_CHECK_LAUNCH();
  return launched;
}

void lighthouse_norm_scores(float* score, const bf16* pyr, int B, int Hx, int D, const Geometry& geo,
                            cudaStream_t s) {
  detail::check_head_dim(D, "norm_scores");
  const DevGeo g = detail::make_dev_geo(geo);
  const int rows = B * Hx;
  const int64_t P = g.P();
  level0_norm(score, pyr, Hx, rows, D, Hx * P * D, P * D, D, g, s);
  window_max(score, rows, g, s);
}

void lighthouse_norm_scores_qkv(float* sq, float* sk, const bf16* qkv, int B, int H, int Hkv, int D,
                                const Geometry& geo, cudaStream_t s) {
  detail::check_head_dim(D, "norm_scores");
  const DevGeo g = detail::make_dev_geo(geo);
  const int64_t row = int64_t(H + 2 * Hkv) * D;  // one token's fused row
  const std::pair<float*, int> parts[] = {{sq, 0}, {sk, H}};
  for (const auto& [score, first_head] : parts) {
    const int Hx = first_head == 0 ? H : Hkv, rows = B * Hx;
    level0_norm(score, qkv + int64_t(first_head) * D, Hx, rows, D, g.N * row, D, row, g, s);
    window_max(score, rows, g, s);
  }
}

}  // namespace lh::cuda
