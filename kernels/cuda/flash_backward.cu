// Deterministic flash-attention backward for Hopper: see flash_backward.h for the scheme.
#include "flash_backward.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "cuda_check.h"
#include "flash_backward_schedule.h"
#include "vec.cuh"
#include "wgmma.cuh"

namespace lh::cuda {
namespace {
namespace wg = wgmma;
using bf16 = __nv_bfloat16;

constexpr int kD = 128;         // head dim
using flash_schedule::BlockWork;
using flash_schedule::kBc;  // key rows per block: 64 per computing warpgroup
using flash_schedule::kBr;  // query rows per step
constexpr int kBlocksInFlightPerPair = 16;  // sets the launch order's group size (flash_backward)
constexpr int kChunks = kD / 8;  // 16-byte chunks per row
constexpr float kLog2e = 1.4426950408889634f;

// Shared memory (bytes from a 1024-aligned base). Tiles are wgmma.cuh panels: a kBc-row tile is
// two panels of kBc * 128 bytes, a kBr-row tile two of kBr * 128. Query-side tiles and the softmax
// terms have kStages buffers (the next steps load while step s computes), dQ partials kDqBuffers.
constexpr int kStages = 2, kDqBuffers = 2;
constexpr uint32_t kKeyPanel = kBc * wg::kRowBytes, kQueryPanel = kBr * wg::kRowBytes;
constexpr uint32_t kKeyTile = 2 * kKeyPanel, kQueryTile = 2 * kQueryPanel;
constexpr uint32_t kOffK = 0, kOffV = kKeyTile, kOffQ = 2 * kKeyTile, kOffDO = kOffQ + kStages * kQueryTile;
// dS^T is single-buffered: both computing warpgroups finish step s (whose dQ product reads
// the other warpgroup's dS^T rows) before either writes step s + 1's, because the next step's tile
// barrier counts the threads of both, so neither passes it before the other has arrived there.
constexpr uint32_t kOffDS = kOffDO + kStages * kQueryTile;  // dS^T: kBc rows of kBr bf16 = one panel
constexpr uint32_t kOffLse = kOffDS + kBc * wg::kRowBytes;    // [kStages][kBr] fp32, log2 units
constexpr uint32_t kOffDsum = kOffLse + kStages * kBr * 4;    // [kStages][kBr] fp32
constexpr uint32_t kDqTile = kBr * kD * 4;                    // a dQ partial, fp32 (dq_tile_offset)
constexpr uint32_t kOffDQ = kOffDsum + kStages * kBr * 4;     // [kDqBuffers] dQ partials
constexpr uint32_t kSmemBytes = kOffDQ + kDqBuffers * kDqTile;
constexpr size_t kSmemAlloc = kSmemBytes + wg::kAtomBytes;  // room to align the base
static_assert(kBr == wg::kPanelCols, "dS^T rows are one panel wide");
static_assert(kSmemAlloc <= 227 * 1024, "more shared memory than a Hopper block can have");

struct RowStrides {  // elements between batches, heads and rows; d is contiguous
  int64_t b, h, s;
};
RowStrides row_strides(const Strides4& s) { return {s[0], s[1], s[2]}; }

struct Params {
  const bf16 *q, *k, *v, *dout;
  bf16 *dq, *dk, *dv;
  RowStrides sq, sk, sv, so, sdq;
  float* lse2;  // [B*Hq][n_pad]: log-sum-exp * log2(e); +inf past N
  float* dsum;  // [B*Hq][n_pad]: rowsum(dO * O); 0 past N
  float* dq_accum;    // [B*Hq][n_q] tiles of kBr x kD fp32, rows permuted by dq_tile_offset
  int* dq_turn;       // [B*Hq][n_q]: how many key blocks have added to the tile
  int* next_block;    // the next block's place in the launch order (BlockWork)
  int B, Hq, Hkv, N, n_q, n_kv, n_pad;
  int group_pairs;  // (batch, kv head) pairs per group of the launch order (flash_schedule::Grid)
  float scale, scale_log2;
};

__device__ __forceinline__ const bf16* head_rows(const bf16* base, RowStrides s, int b, int h) {
  return base + int64_t(b) * s.b + int64_t(h) * s.h;
}

// Index of query tile i of batch-head bh among the dQ accumulator's tiles and their counters.
__device__ __forceinline__ int64_t tile_index(const Params& p, int bh, int i) { return int64_t(bh) * p.n_q + i; }

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// 2^x on the special-function unit (2^-inf = +0: masked and padding rows).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ int load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Where a thread's accumulator element lives (wgmma.cuh's layout): n8 block jj, element e.
struct Lane {
  int warp, lane;
  __device__ int row(int e) const { return warp * 16 + lane / 4 + 8 * (e / 2); }
  __device__ int col(int jj, int e) const { return 8 * jj + 2 * (lane % 4) + (e % 2); }
};

// Float offset of (row r, column c) in a dQ tile: rows of kD floats whose 16-byte chunks are
// permuted by an XOR with 2 * (r % 8), so that a warp's stores of its accumulator (8 rows x two
// chunks) take two shared-memory wavefronts instead of eight. The global accumulator keeps the same
// order, because the bulk copies move tiles byte for byte; the final conversion undoes it.
__host__ __device__ __forceinline__ int dq_tile_offset(int r, int c) {
  return r * kD + ((c / 4) ^ ((r % 8) << 1)) * 4 + c % 4;
}

// ---- Warp specialization ----
// Three warpgroups: warpgroup 0 loads tiles (warps 0-2, cp.async) and adds dQ partials (warp 3);
// warpgroups 1 and 2 compute, each over 64 of the block's 128 keys. They hand buffers over through
// named barriers (ids below; 0 is __syncthreads): a "full" barrier the producer arrives at and the
// consumers wait on, an "empty" one the other way round. Warpgroup 0 gives most of its registers
// to the computing ones (setmaxnreg): 232 each leaves a little spilling (ptxas -v: 52 bytes; five
// 4-byte reloads a step), 224 more.
constexpr int kThreads = 384;
constexpr int kComputeThreads = 256, kLoadThreads = 96, kDqWarpThreads = 32;
constexpr int kLoadRegs = 40, kComputeRegs = 232;
static_assert(kLoadThreads + kDqWarpThreads + kComputeThreads == kThreads, "warp roles");
static_assert(128 * kLoadRegs + kComputeThreads * kComputeRegs <= 65536, "register file");
enum Barrier : int {
  kTileFull = 1,                        // + stage: the step's Q, dO, lse and dsum are in
  kTileEmpty = kTileFull + kStages,     // + stage: the consumers are done with them
  kDqFull = kTileEmpty + kStages,       // + dQ buffer: a dQ partial is in shared memory
  kDqEmpty = kDqFull + kDqBuffers,      // + dQ buffer: its bulk add has read it
  kDsReady = kDqEmpty + kDqBuffers,     // both computing warpgroups' dS^T rows are in
};
static_assert(kDsReady < 16, "a block has 16 named barriers");
__device__ __forceinline__ void barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Shared-memory addresses of the block's tiles.
struct Tiles {
  uint32_t base;  // 1024-aligned
  __device__ uint32_t q(int buf) const { return base + kOffQ + buf * kQueryTile; }
  __device__ uint32_t dout(int buf) const { return base + kOffDO + buf * kQueryTile; }
  __device__ uint32_t lse(int buf) const { return base + kOffLse + buf * kBr * 4; }
  __device__ uint32_t dsum(int buf) const { return base + kOffDsum + buf * kBr * 4; }
  __device__ uint32_t dq(int buf) const { return base + kOffDQ + buf * kDqTile; }
};

// Rows [r0, r0 + R) of one head into a two-panel tile (rows at or past N zero-filled), by the
// `threads` threads numbered `t`.
template <int R>
__device__ __forceinline__ void load_tile(uint32_t dst, const bf16* rows, int64_t row_stride, int r0, int N, int t,
                                          int threads) {
  for (int c = t; c < R * kChunks; c += threads) {
    const int r = c / kChunks, chunk = c % kChunks;
    const bool valid = r0 + r < N;
    const bf16* src = rows + int64_t(valid ? r0 + r : 0) * row_stride + chunk * 8;
    wg::cp_async16(dst + uint32_t(chunk / 8) * (R * wg::kRowBytes) + wg::swizzled(r, chunk % 8), src, valid);
  }
}

// Warps 0-2: K and V once, then each step's Q, dO, lse and dsum into the buffers of its stage.
__device__ void load_role(const Params& p, const BlockWork& w, const Tiles& t, int lt) {
  load_tile<kBc>(t.base + kOffK, head_rows(p.k, p.sk, w.b, w.hk), p.sk.s, w.kv0, p.N, lt, kLoadThreads);
  load_tile<kBc>(t.base + kOffV, head_rows(p.v, p.sv, w.b, w.hk), p.sv.s, w.kv0, p.N, lt, kLoadThreads);
  for (BlockWork::Step x = w.first_step(); x.s < w.steps; w.advance(x)) {
    const int s = x.s, buf = s % kStages, i = x.tile, h = x.head, bh = w.b * p.Hq + h;
    if (s >= kStages) barrier_sync(kTileEmpty + buf, kLoadThreads + kComputeThreads);
    load_tile<kBr>(t.q(buf), head_rows(p.q, p.sq, w.b, h), p.sq.s, i * kBr, p.N, lt, kLoadThreads);
    load_tile<kBr>(t.dout(buf), head_rows(p.dout, p.so, w.b, h), p.so.s, i * kBr, p.N, lt, kLoadThreads);
    if (lt < 2 * kBr / 4) {  // 16 chunks of log-sum-exp, 16 of dsum
      const int c = lt % (kBr / 4);
      const bool lse = lt < kBr / 4;
      const float* src = (lse ? p.lse2 : p.dsum) + int64_t(bh) * p.n_pad + i * kBr + 4 * c;
      wg::cp_async16((lse ? t.lse(buf) : t.dsum(buf)) + 16 * c, src, true);
    }
    wg::cp_async_commit();
    wg::cp_async_wait_all();
    wg::fence_proxy_async_shared();  // the consumers read the tiles through wgmma (async proxy)
    barrier_arrive(kTileFull + buf, kLoadThreads + kComputeThreads);
  }
}

// Warp 3: adds each step's dQ partial to the tile's fp32 accumulator with one bulk copy (key
// block 0, which adds first) or bulk reduce (the others), in turn, by waiting on the tile's counter
// and releasing it once the add has finished (release: the next block then sees the sum). The
// release is not deferred behind the next step's add: blocks that start together walk the same
// tiles in lock step, each one add behind the previous, and a deferred release would put a whole
// step between them instead. A block other than key block 0 (turn() > 0) also asks the L2 for the
// tile of its next add a step ahead, so that its reduce does not wait on memory while the blocks
// after it wait for their turn (8 x 4K: -6.7%).
__device__ void dq_role(const Params& p, const BlockWork& w, const Tiles& t, int lane) {
  auto prefetch = [&](const BlockWork::Step& x) {
    if (lane == 0 && w.turn() > 0 && x.s < w.steps)
      wg::bulk_prefetch_l2(p.dq_accum + tile_index(p, w.b * p.Hq + x.head, x.tile) * (kBr * kD), kDqTile);
  };
  prefetch(w.first_step());
  for (BlockWork::Step x = w.first_step(); x.s < w.steps; w.advance(x)) {
    const int s = x.s, buf = s % kDqBuffers, i = x.tile, bh = w.b * p.Hq + x.head;
    barrier_sync(kDqFull + buf, kDqWarpThreads + kComputeThreads);
    if (lane == 0) {
      int* counter = p.dq_turn + tile_index(p, bh, i);
      while (load_acquire(counter) != w.turn()) {
      }
      wg::fence_proxy_async();
      float* tile = p.dq_accum + tile_index(p, bh, i) * (kBr * kD);
      if (w.turn() == 0)
        wg::bulk_store(tile, t.dq(buf), kDqTile);
      else
        wg::bulk_reduce_add(tile, t.dq(buf), kDqTile);
      wg::bulk_commit();
      wg::bulk_wait<0>();
      wg::fence_proxy_async();
      asm volatile("red.release.gpu.global.add.s32 [%0], 1;\n" ::"l"(counter) : "memory");
      BlockWork::Step next = x;
      w.advance(next);
      prefetch(next);
    }
    __syncwarp();
    // The partial has been read: its buffer is free for step s + kDqBuffers.
    if (s + kDqBuffers < w.steps) barrier_arrive(kDqEmpty + buf, kDqWarpThreads + kComputeThreads);
  }
}

// P^T = exp(scale S^T - lse) and dS^T = P^T (dP^T - dsum) in place of S^T and dP^T (this thread's
// accumulator elements), without the causal mask.
__device__ __forceinline__ void softmax_grad(float (&st)[32], float (&dpt)[32], const Tiles& t, int buf, const Lane& at,
                                             float scale_log2) {
#pragma unroll
  for (int jj = 0; jj < kBr / 8; ++jj) {
    // The lane's two query columns of this n8 block: one 8-byte load each for lse and dsum.
    const int qc = at.col(jj, 0);
    const float2 lse = wg::ld_shared_f2(t.lse(buf) + 4 * qc);
    const float2 dsum = wg::ld_shared_f2(t.dsum(buf) + 4 * qc);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int x = 4 * jj + e;
      const float pv = fast_exp2(fmaf(st[x], scale_log2, -(e % 2 ? lse.y : lse.x)));
      st[x] = pv;
      dpt[x] = pv * (dpt[x] - (e % 2 ? dsum.y : dsum.x));
    }
  }
}

// The causal mask: P^T and dS^T are 0 where key key0 + row comes after query query0 + column. A
// separate pass for the few tiles that need it (one code path with the mask in it was slower;
// two copies of softmax_grad made ptxas serialize the wgmma instructions for lack of registers).
__device__ __forceinline__ void causal_mask(float (&st)[32], float (&dpt)[32], const Lane& at, int key0, int query0) {
#pragma unroll
  for (int x = 0; x < 32; ++x)
    if (key0 + at.row(x % 4) > query0 + at.col(x / 4, x % 4)) st[x] = dpt[x] = 0.0f;
}

// Warpgroups 1 and 2: the products of each step over this warpgroup's 64 keys (cwg = 0 or 1); at
// the end, dK (scaled) and dV of those keys.
__device__ void compute_role(const Params& p, const BlockWork& w, const Tiles& t, int cwg, int ct) {
  float dk[64], dv[64];
#pragma unroll
  for (int e = 0; e < 64; ++e) dk[e] = dv[e] = 0.0f;
  const uint32_t key_rows = uint32_t(cwg) * 64 * wg::kRowBytes;
  for (BlockWork::Step x = w.first_step(); x.s < w.steps; w.advance(x)) {
    const int s = x.s, buf = s % kStages, dq_buf = s % kDqBuffers, i = x.tile;
    const Lane at{(ct % 128) / 32, ct % 32};
    const uint32_t sK = t.base + kOffK, sV = t.base + kOffV, sDS = t.base + kOffDS, sQ = t.q(buf),
                   sDO = t.dout(buf);
    barrier_sync(kTileFull + buf, kLoadThreads + kComputeThreads);

    // S^T = K Q^T and dP^T = V dO^T. Descriptors: one per operand and step, advanced per k16 step
    // (32 bytes along the rows; the second panel for the upper 64 columns of d).
    float st[32], dpt[32];
    const uint64_t k_desc = wg::k_major(sK + key_rows), v_desc = wg::k_major(sV + key_rows);
    const uint64_t q_desc = wg::k_major(sQ), do_desc = wg::k_major(sDO);
    wg::fence();
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk)
      wg::mma_ss_n64<0, 0>(st, wg::advance(k_desc, (kk / 4) * kKeyPanel + (kk % 4) * 32),
                           wg::advance(q_desc, (kk / 4) * kQueryPanel + (kk % 4) * 32), kk > 0);
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk)
      wg::mma_ss_n64<0, 0>(dpt, wg::advance(v_desc, (kk / 4) * kKeyPanel + (kk % 4) * 32),
                           wg::advance(do_desc, (kk / 4) * kQueryPanel + (kk % 4) * 32), kk > 0);
    wg::commit();
    wg::wait<0>();
    wg::fence_operands(st);
    wg::fence_operands(dpt);

    // Only the tiles that reach below the block's first key need the causal mask.
    softmax_grad(st, dpt, t, buf, at, p.scale_log2);
    if (i * kBr < w.kv0 + kBc) causal_mask(st, dpt, at, w.kv0 + cwg * 64, i * kBr);
    // P^T and dS^T in bf16, packed in pairs: as the accumulators of S^T and dP^T (rows = keys,
    // columns = queries) they are already the register A operands of dV += P^T dO and
    // dK += dS^T Q, k16 slice kk being elements 8kk..8kk+7.
    uint32_t pa[kBr / 16][4], dsa[kBr / 16][4];
#pragma unroll
    for (int kk = 0; kk < kBr / 16; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        pa[kk][r] = pack_bf16(st[8 * kk + 2 * r], st[8 * kk + 2 * r + 1]);
        dsa[kk][r] = pack_bf16(dpt[8 * kk + 2 * r], dpt[8 * kk + 2 * r + 1]);
      }
    // dS^T to shared memory too, for the dQ product, which needs both warpgroups' keys. stmatrix
    // stores two n8 blocks (both 8-row halves of each) per instruction; lane l addresses row l % 8
    // of block l / 8.
    const int m = at.lane / 8, row = cwg * 64 + at.warp * 16 + 8 * (m % 2) + at.lane % 8;
#pragma unroll
    for (int kk = 0; kk < kBr / 16; ++kk)
      wg::stmatrix_x4(sDS + wg::swizzled(row, 2 * kk + m / 2), dsa[kk][0], dsa[kk][1], dsa[kk][2], dsa[kk][3]);
    wg::fence_proxy_async_shared();

    // dV += P^T dO and dK += dS^T Q (B: the query-side tile, MN-major) need only this warpgroup's
    // keys: they start while the other warpgroup may still be storing its dS^T rows.
    constexpr uint32_t kK16Rows = 16 * wg::kRowBytes;  // an MN-major operand's k16 step
    const uint64_t do_mn = wg::mn_major(sDO, kQueryPanel), q_mn = wg::mn_major(sQ, kQueryPanel);
    wg::fence();
#pragma unroll
    for (int kk = 0; kk < kBr / 16; ++kk) wg::mma_rs_n128<1>(dv, pa[kk], wg::advance(do_mn, kk * kK16Rows));
#pragma unroll
    for (int kk = 0; kk < kBr / 16; ++kk) wg::mma_rs_n128<1>(dk, dsa[kk], wg::advance(q_mn, kk * kK16Rows));
    wg::commit();
    barrier_sync(kDsReady, kComputeThreads);  // dQ needs both warpgroups' dS^T rows

    // The dQ partial (64 queries x this warpgroup's 64 columns of d) = dS K over all 128 keys
    // (A: dS^T read M-major). The wgmma.fence before dV/dK also orders the last step's reads of
    // the dq registers (its stores) before this product writes them.
    float dq[32];
    const uint64_t ds_mn = wg::mn_major(sDS, kBc * wg::kRowBytes);
    const uint64_t k_mn = wg::mn_major(sK + cwg * kKeyPanel, kKeyPanel);
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk)
      wg::mma_ss_n64<1, 1>(dq, wg::advance(ds_mn, kk * kK16Rows), wg::advance(k_mn, kk * kK16Rows), kk > 0);
    wg::commit();
    wg::wait<0>();
    wg::fence_operands(dq);
    wg::fence_operands(dk);
    wg::fence_operands(dv);
#pragma unroll
    for (int kk = 0; kk < kBr / 16; ++kk) {
      wg::fence_operands(pa[kk]);
      wg::fence_operands(dsa[kk]);
    }
    if (s + kStages < w.steps) barrier_arrive(kTileEmpty + buf, kLoadThreads + kComputeThreads);

    // The partial to shared memory, for the dQ warp.
    if (s >= kDqBuffers) barrier_sync(kDqEmpty + dq_buf, kDqWarpThreads + kComputeThreads);
#pragma unroll
    for (int jj = 0; jj < 8; ++jj)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = at.row(2 * half), c = cwg * 64 + at.col(jj, 0);
        wg::st_shared_f2(t.dq(dq_buf) + 4 * dq_tile_offset(r, c), dq[4 * jj + 2 * half], dq[4 * jj + 2 * half + 1]);
      }
    wg::fence_proxy_async_shared();  // the bulk copy reads through the async proxy too
    barrier_arrive(kDqFull + dq_buf, kDqWarpThreads + kComputeThreads);
  }

  const Lane at{(ct % 128) / 32, ct % 32};
  const int64_t kv_row0 = w.kv0 + cwg * 64;
  bf16* dk_rows = p.dk + int64_t(w.b) * p.sk.b + int64_t(w.hk) * p.sk.h;
  bf16* dv_rows = p.dv + int64_t(w.b) * p.sv.b + int64_t(w.hk) * p.sv.h;
#pragma unroll
  for (int jj = 0; jj < kD / 8; ++jj)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = kv_row0 + at.row(2 * half);
      if (row >= p.N) continue;
      const int c = at.col(jj, 0), x = 4 * jj + 2 * half;
      *reinterpret_cast<uint32_t*>(dk_rows + row * p.sk.s + c) = pack_bf16(dk[x] * p.scale, dk[x + 1] * p.scale);
      *reinterpret_cast<uint32_t*>(dv_rows + row * p.sv.s + c) = pack_bf16(dv[x], dv[x + 1]);
    }
}

// 1 in code compiled for sm_90a (machine code, or compute_90a PTX compiled at load time), 0 in any
// other: a build for plain sm_90, or an earlier target's PTX compiled for a Hopper, has a trap for
// the kernel's body (below), and the host reads this to keep such a device on cuDNN
// (flash_backward_supported).
__device__ int flash_kernel_compiled =
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    1;
#else
    0;
#endif

__global__ void __launch_bounds__(kThreads, 1) flash_backward_kernel(const Params p) {
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __trap();  // wgmma and setmaxnreg need sm_90a; flash_backward_supported() keeps this code from running
#else
  extern __shared__ uint8_t smem_raw[];
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + wg::kAtomBytes - 1) &
                                             ~uintptr_t(wg::kAtomBytes - 1));
  __shared__ int order;
  if (threadIdx.x == 0) order = atomicAdd(p.next_block, 1);
  __syncthreads();
  const Tiles t{wg::smem_addr(smem)};
  const BlockWork w({p.B, p.Hq, p.Hkv, p.n_q, p.n_kv, p.group_pairs}, order);
  const int tid = threadIdx.x;
  if (tid < 128) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kLoadRegs));
    if (tid < kLoadThreads)
      load_role(p, w, t, tid);
    else
      dq_role(p, w, t, tid % 32);
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kComputeRegs));
    compute_role(p, w, t, (tid - 128) / 128, tid - 128);
  }
#endif
}

// Per query row: rowsum(dO * O) in fp32 and the log-sum-exp in log2 units (one warp per row,
// four columns per lane, lanes in a fixed shuffle order: deterministic); padding rows get 0 and
// +inf (P = 0); every tile counter and the block order start at 0.
static_assert(kD == 4 * 32, "prepare kernel: four columns per lane");
__global__ void flash_backward_prepare_kernel(const Params p, const bf16* o, const float* stats, RowStrides st) {
  const int64_t warps = int64_t(detail::grid_threads() / 32);
  const int lane = threadIdx.x % 32;
  const int64_t rows = int64_t(p.B) * p.Hq * p.n_pad;
  for (int64_t w = int64_t(detail::global_thread() / 32); w < rows; w += warps) {
    const int t = int(w % p.n_pad), bh = int(w / p.n_pad), b = bh / p.Hq, h = bh % p.Hq;
    float sum = 0.0f, lse2 = INFINITY;
    if (t < p.N) {
      const bf16* orow = head_rows(o, p.so, b, h) + int64_t(t) * p.so.s + 4 * lane;
      const bf16* drow = head_rows(p.dout, p.so, b, h) + int64_t(t) * p.so.s + 4 * lane;
#pragma unroll
      for (int e = 0; e < 4; ++e) sum = fmaf(__bfloat162float(orow[e]), __bfloat162float(drow[e]), sum);
#pragma unroll
      for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
      lse2 = stats[b * st.b + h * st.h + t * st.s] * kLog2e;
    }
    if (lane == 0) {
      p.dsum[w] = sum;
      p.lse2[w] = lse2;
      if (t % kBr == 0) p.dq_turn[tile_index(p, bh, t / kBr)] = 0;
      if (w == 0) *p.next_block = 0;
    }
  }
}

// dQ = scale * the accumulated tiles, in bf16 with dq's strides: 4 floats per thread and step.
__global__ void flash_backward_dq_kernel(const Params p) {
  constexpr int kQuads = kD / 4;
  const int64_t quads = int64_t(p.B) * p.Hq * p.N * kQuads;
  for (int64_t x = int64_t(detail::global_thread()); x < quads; x += int64_t(detail::grid_threads())) {
    const int c = 4 * int(x % kQuads), t = int(x / kQuads % p.N), bh = int(x / kQuads / p.N);
    const int b = bh / p.Hq, h = bh % p.Hq;
    const float4 v = *reinterpret_cast<const float4*>(p.dq_accum + tile_index(p, bh, t / kBr) * (kBr * kD) +
                                                      dq_tile_offset(t % kBr, c));
    const uint2 out = {pack_bf16(v.x * p.scale, v.y * p.scale), pack_bf16(v.z * p.scale, v.w * p.scale)};
    *reinterpret_cast<uint2*>(p.dq + int64_t(b) * p.sdq.b + int64_t(h) * p.sdq.h + int64_t(t) * p.sdq.s + c) = out;
  }
}

struct WorkspaceLayout {  // byte offsets; the fp32 dQ accumulator comes first
  size_t lse2, dsum, turn, next_block, total;
};
WorkspaceLayout layout(const SdpaShape& sh) {
  const size_t n_q = size_t((sh.s + kBr - 1) / kBr), rows = size_t(sh.b * sh.hq) * n_q * kBr;
  WorkspaceLayout w;
  w.lse2 = round_up_scratch(rows * kD * sizeof(float));
  w.dsum = w.lse2 + round_up_scratch(rows * sizeof(float));
  w.turn = w.dsum + round_up_scratch(rows * sizeof(float));
  w.next_block = w.turn + round_up_scratch(size_t(sh.b * sh.hq) * n_q * sizeof(int));
  w.total = w.next_block + round_up_scratch(sizeof(int));
  return w;
}

bool row_aligned(const Strides4& s) { return s[3] == 1 && s[0] % 8 == 0 && s[1] % 8 == 0 && s[2] % 8 == 0; }

// Whether the current device can run the kernel: compute capability 9.0 and this build's code for
// it compiled for sm_90a (flash_kernel_compiled). Read once per device (per host thread, like
// detail::grid_for's SM count).
bool device_runs_kernel() {
  static thread_local int cached_device = -1;
  static thread_local bool cached = false;
  int dev = 0;
  LH_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != cached_device) {
    int major = 0, minor = 0, compiled = 0;
    LH_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    LH_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    // Only a 9.0 device can run the kernel. A build may have no code for the device at all (say
    // sm_80 machine code only): then the read fails, which means no, and the error is cleared so
    // that no later check reports it.
    if (major == 9 && minor == 0 &&
        cudaMemcpyFromSymbol(&compiled, flash_kernel_compiled, sizeof(compiled)) != cudaSuccess) {
      compiled = 0;
      (void)cudaGetLastError();
    }
    cached = compiled == 1;
    cached_device = dev;
  }
  return cached;
}
}  // namespace

bool flash_backward_supported(const SdpaShape& sh) {
  return sh.d == kD && sh.kv_len() == sh.s && sh.hq % sh.hk == 0 && sh.b * sh.hk <= 65535 && row_aligned(sh.q) &&
         row_aligned(sh.k) && row_aligned(sh.v) && row_aligned(sh.o) && row_aligned(sh.dq_strides()) &&
         device_runs_kernel();
}

bool flash_backward_aligned(std::initializer_list<const void*> pointers) {
  for (const void* ptr : pointers)
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  return true;
}

size_t flash_backward_workspace(const SdpaShape& sh) { return layout(sh).total; }

void flash_backward(const SdpaShape& sh, const bf16* q, const bf16* k, const bf16* v, const bf16* o,
                    const bf16* dout, const float* stats, bf16* dq, bf16* dk, bf16* dv, float scale, void* workspace,
                    cudaStream_t stream) {
  if (!flash_backward_supported(sh) || !flash_backward_aligned({q, k, v, o, dout, dq, dk, dv}))
    throw std::invalid_argument("flash_backward: unsupported attention shape, device or alignment");
  const WorkspaceLayout w = layout(sh);
  char* ws = static_cast<char*>(workspace);
  Params p{};
  p.q = q, p.k = k, p.v = v, p.dout = dout, p.dq = dq, p.dk = dk, p.dv = dv;
  p.sq = row_strides(sh.q), p.sk = row_strides(sh.k), p.sv = row_strides(sh.v), p.so = row_strides(sh.o);
  p.sdq = row_strides(sh.dq_strides());
  p.dq_accum = reinterpret_cast<float*>(ws);
  p.lse2 = reinterpret_cast<float*>(ws + w.lse2);
  p.dsum = reinterpret_cast<float*>(ws + w.dsum);
  p.dq_turn = reinterpret_cast<int*>(ws + w.turn);
  p.next_block = reinterpret_cast<int*>(ws + w.next_block);
  p.B = int(sh.b), p.Hq = int(sh.hq), p.Hkv = int(sh.hk), p.N = int(sh.s);
  p.n_q = int((sh.s + kBr - 1) / kBr), p.n_kv = int((sh.s + kBc - 1) / kBc), p.n_pad = p.n_q * kBr;
  p.scale = scale, p.scale_log2 = scale * kLog2e;
  // About 16 blocks of each (batch, kv head) pair in flight at once: with more pairs at a time
  // their dQ tiles and query rows fall out of the L2 between reuses (8 x 4K: 64 pairs in one
  // group took 1.84 ms, groups of 8 or 16 pairs 1.71, bit-identical), with fewer the blocks of a
  // pair wait longer for their turns on its tiles (1 x 16K: 8 pairs 2.95 ms, 2 pairs 3.09; H200).
  p.group_pairs = std::max(1, detail::sm_count() / kBlocksInFlightPerPair);

  const int64_t rows = sh.b * sh.hq * int64_t(p.n_pad);
  constexpr int kThreadsPerBlock = 256;  // of the two elementwise kernels (grid-stride loops)
  flash_backward_prepare_kernel<<<detail::grid_for(size_t(rows) * 32, kThreadsPerBlock), kThreadsPerBlock, 0,
                                  stream>>>(p, o, stats, row_strides(sh.stats));
  LH_CUDA_CHECK(cudaGetLastError());

  // More than 48 KB of shared memory needs an opt-in (per device; cheap to repeat).
  LH_CUDA_CHECK(
      cudaFuncSetAttribute(flash_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemAlloc)));
  const dim3 grid(unsigned(p.n_kv), unsigned(sh.b * sh.hk));  // one block per key block and kv head
  flash_backward_kernel<<<grid, kThreads, kSmemAlloc, stream>>>(p);
  LH_CUDA_CHECK(cudaGetLastError());
  const int64_t quads = sh.b * sh.hq * sh.s * (kD / 4);
  flash_backward_dq_kernel<<<detail::grid_for(size_t(quads), kThreadsPerBlock), kThreadsPerBlock, 0, stream>>>(p);
  LH_CUDA_CHECK(cudaGetLastError());
}

}  // namespace lh::cuda
