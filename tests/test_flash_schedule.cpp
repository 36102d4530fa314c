// The flash-attention backward's schedule (kernels/cuda/flash_backward_schedule.h), checked on the
// CPU: the kernel only runs on a Hopper GPU, but whether its blocks cover the work once, add dQ in a
// fixed order and can never wait on a block that has not started does not depend on the device.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "cuda/flash_backward_schedule.h"

namespace {
using lh::cuda::flash_schedule::BlockWork;
using lh::cuda::flash_schedule::Grid;
using lh::cuda::flash_schedule::kBc;
using lh::cuda::flash_schedule::kBr;

struct Launch {
  int B, Hq, Hkv, N;
};
// Every launch in one group (0), one pair per group, and groups of 3 pairs (the last one short when
// the pairs do not divide by 3).
Grid grid_of(const Launch& l) {
  const int group_pairs = GENERATE(0, 1, 3);
  return {l.B, l.Hq, l.Hkv, (l.N + kBr - 1) / kBr, (l.N + kBc - 1) / kBc, group_pairs};
}
int blocks_of(const Grid& g) { return g.B * g.Hkv * g.n_kv; }

// One dQ add of a block: batch, query head, query tile.
using TileKey = std::tuple<int, int, int>;
std::vector<TileKey> adds_of(const BlockWork& w) {
  std::vector<TileKey> adds;
  for (BlockWork::Step x = w.first_step(); x.s < w.steps; w.advance(x)) adds.emplace_back(w.b, x.head, x.tile);
  return adds;
}

// Launch shapes: sequence lengths on and off the 64/128 grid, GQA groups of 1, 2, 3, 4 and 8.
Launch any_launch() {
  return GENERATE(Launch{1, 1, 1, 1}, Launch{1, 1, 1, 64}, Launch{1, 8, 8, 1000}, Launch{2, 8, 2, 257},
                  Launch{2, 4, 1, 640}, Launch{1, 8, 4, 100}, Launch{3, 6, 2, 129}, Launch{1, 8, 1, 384});
}
}  // namespace

TEST_CASE("flash schedule: each (batch, kv head, key block) is taken once and walks the query tiles its keys reach",
          "[flash_schedule]") {
  const Launch l = any_launch();
  const Grid g = grid_of(l);
  CAPTURE(l.B, l.Hq, l.Hkv, l.N, g.group_pairs);
  std::set<std::tuple<int, int, int>> taken;
  for (int order = 0; order < blocks_of(g); ++order) {
    const BlockWork w(g, order);
    CHECK(taken.insert({w.b, w.hk, w.j}).second);
    REQUIRE(w.j < g.n_kv);
    // The causal reach: a query tile matters iff its last query row is at or past the block's
    // first key; the block starts at the first such tile.
    CHECK(w.first_tile * kBr + kBr - 1 >= w.j * kBc);
    CHECK((w.first_tile == 0 || (w.first_tile - 1) * kBr + kBr - 1 < w.j * kBc));
    // Every (tile, head of the group) from the last tile down to first_tile, each once.
    std::set<std::pair<int, int>> seen;
    int previous_tile = g.n_q;
    for (BlockWork::Step x = w.first_step(); x.s < w.steps; w.advance(x)) {
      CHECK(x.tile <= previous_tile);
      previous_tile = x.tile;
      CHECK(x.tile >= w.first_tile);
      CHECK(x.tile < g.n_q);
      CHECK(x.head / (g.Hq / g.Hkv) == w.hk);
      CHECK(seen.insert({x.tile, x.head}).second);
    }
    CHECK(int(seen.size()) == (g.n_q - w.first_tile) * (g.Hq / g.Hkv));
  }
  CHECK(int(taken.size()) == blocks_of(g));
}

TEST_CASE("flash schedule: a tile's dQ partials are added in turns 0, 1, 2, ... by blocks that started in that order",
          "[flash_schedule]") {
  const Launch l = any_launch();
  const Grid g = grid_of(l);
  CAPTURE(l.B, l.Hq, l.Hkv, l.N, g.group_pairs);
  std::map<TileKey, std::vector<std::pair<int, int>>> adders;  // tile -> (turn, order) of each adder
  for (int order = 0; order < blocks_of(g); ++order) {
    const BlockWork w(g, order);
    for (const TileKey& tile : adds_of(w)) adders[tile].emplace_back(w.turn(), order);
  }
  // Every tile of every query head gets adds (key block 0 reaches them all), so its accumulator is
  // always written first by a plain store (turn 0).
  CHECK(int(adders.size()) == g.B * g.Hq * g.n_q);
  for (auto& [tile, list] : adders) {
    std::sort(list.begin(), list.end());
    for (size_t k = 0; k < list.size(); ++k) {
      CHECK(list[k].first == int(k));                             // turns 0, 1, 2, ... without gaps
      if (k > 0) CHECK(list[k].second > list[k - 1].second);  // the previous turn started earlier
    }
  }
}

TEST_CASE("flash schedule: the blocks finish on few SMs whatever order the waits take (no deadlock)",
          "[flash_schedule]") {
  const Launch l = any_launch();
  const int sms = GENERATE(1, 2, 3, 7);
  const Grid g = grid_of(l);
  CAPTURE(l.B, l.Hq, l.Hkv, l.N, g.group_pairs, sms);
  // Blocks start in order as SMs free up; a running block makes its next add only when the tile's
  // counter has reached its turn (stricter than the kernel, whose products run up to two steps
  // ahead of its adds). Round-robin over the running blocks until none can move.
  struct Running {
    BlockWork w;
    std::vector<TileKey> adds;
    size_t next;
  };
  std::map<TileKey, int> counter;
  std::vector<Running> running;
  int started = 0, finished = 0;
  for (bool moved = true; moved;) {
    moved = false;
    while (int(running.size()) < sms && started < blocks_of(g)) {
      const BlockWork w(g, started++);
      running.push_back({w, adds_of(w), 0});
      moved = true;
    }
    for (Running& r : running)
      while (r.next < r.adds.size() && counter[r.adds[r.next]] == r.w.turn()) {
        ++counter[r.adds[r.next++]];
        moved = true;
      }
    const auto done = [](const Running& r) { return r.next == r.adds.size(); };
    finished += int(std::count_if(running.begin(), running.end(), done));
    running.erase(std::remove_if(running.begin(), running.end(), done), running.end());
  }
  CHECK(finished == blocks_of(g));
  CHECK(running.empty());
}

TEST_CASE("flash schedule: groups of (batch, kv head) pairs are taken one after the other, longest blocks first in each",
          "[flash_schedule]") {
  const Launch l = any_launch();
  const Grid g = grid_of(l);
  CAPTURE(l.B, l.Hq, l.Hkv, l.N, g.group_pairs);
  const int pairs = g.B * g.Hkv, per_group = g.group_pairs > 0 ? std::min(g.group_pairs, pairs) : pairs;
  int previous_group = 0, previous_j = 0;
  for (int order = 0; order < blocks_of(g); ++order) {
    const BlockWork w(g, order);
    const int group = (w.b * g.Hkv + w.hk) / per_group;
    CHECK(group >= previous_group);
    if (group == previous_group) CHECK(w.j >= previous_j);  // within a group, key block 0 of all first
    if (group != previous_group) CHECK(w.j == 0);
    previous_group = group, previous_j = w.j;
  }
  CHECK(previous_group == (pairs - 1) / per_group);
}
