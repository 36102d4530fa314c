// The schedule of the flash-attention backward (flash_backward.cu): which key block a thread
// block takes, the order in which it walks the query tiles, and the order in which key blocks add
// their dQ partials to a tile. Host and device code: tests check its invariants (every tile's
// first add is by key block 0, a block only waits for blocks that started before it) on the CPU.
#pragma once
#include <cuda_runtime.h>  // __host__ / __device__ (empty for a host compiler)

namespace lh::cuda::flash_schedule {

constexpr int kBr = 64;   // query rows per step (a query tile)
constexpr int kBc = 128;  // key rows per thread block (a key block)

// A launch in tiles: batches, query and kv heads, query tiles and key blocks of the sequence, and
// how many (batch, kv head) pairs share one group of the launch order (BlockWork; 0: all of them).
struct Grid {
  int B, Hq, Hkv, n_q, n_kv, group_pairs = 0;
};

// What every role knows about the block: its key block, head group and the steps it walks. The
// block touches the query tiles from its diagonal, first_tile, to n_q - 1 and walks them from the
// last down: step s takes tile n_q - 1 - s / G of query head hk * G + s % G.
// Blocks take their work in the order they start (`order`, from an atomic counter). The (batch, kv
// head) pairs are split into groups of g.group_pairs, taken one group after the other, so that the
// dQ accumulators and query-side rows of the pairs in flight stay in the L2 between the blocks
// that reuse them. Within a group, longest first: key block 0 of every pair before key block 1 of
// any, so that short blocks fill the group's end instead of SMs idling behind a long one (the next
// group's long blocks start beside them). A tile's dQ partials are added in key-block order (block
// j adds j-th), so a block waits only for blocks that took their work before it and can never wait
// for one that has not started, whatever order the hardware starts blocks in. Those walk the same
// tiles in the same order and started earlier, so they are ahead.
struct BlockWork {
  int j, b, hk, G, kv0, first_tile, last_tile, steps;
  __host__ __device__ BlockWork(const Grid& g, int order) : G(g.Hq / g.Hkv) {
    const int pairs = g.B * g.Hkv;
    const int per_group = g.group_pairs > 0 && g.group_pairs < pairs ? g.group_pairs : pairs;
    const int group = order / (per_group * g.n_kv), first_pair = group * per_group;
    const int in_group = pairs - first_pair < per_group ? pairs - first_pair : per_group;  // the last may be short
    const int r = order - first_pair * g.n_kv, pair = first_pair + r % in_group;
    j = r / in_group, b = pair / g.Hkv, hk = pair % g.Hkv;
    kv0 = j * kBc, first_tile = kv0 / kBr, last_tile = g.n_q - 1;
    steps = (last_tile + 1 - first_tile) * G;
  }
  // How many key blocks add to a tile's dQ before this one: its turn on the tile's counter.
  __host__ __device__ int turn() const { return j; }
  // Step s's query tile and head, advanced step by step (no division by G in the loops).
  struct Step {
    int s, tile, head;
  };
  __host__ __device__ Step first_step() const { return {0, last_tile, hk * G}; }
  __host__ __device__ void advance(Step& x) const {
    ++x.s;
    if (++x.head == (hk + 1) * G) x.head = hk * G, --x.tile;
  }
};

}  // namespace lh::cuda::flash_schedule
