// Lighthouse selection: per (batch, query head) and per tile, the top-k cascade from the coarsest
// level down to level 1, emitting every candidate, then the tile-local causal sort.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lh::lighthouse {
namespace {

// Ranks candidate a before b: higher score first, equal scores -> lower index first. A strict
// total order on distinct indices (NaN scores are rejected before ranking).
struct ByScore {
  const float* level_score;  // scores of the candidates' level, indexed by level-local index
  bool operator()(int64_t a, int64_t b) const {
    const float sa = level_score[a], sb = level_score[b];
    return sa != sb ? sa > sb : a < b;
  }
};

// Marks `count` more candidates as chosen: the best of those not yet chosen under `rank`.
void choose_best(const std::vector<int64_t>& cand, std::vector<char>& chosen, int count, const ByScore& rank) {
  std::vector<int64_t> open;
  for (size_t j = 0; j < cand.size(); ++j)
    if (!chosen[j]) open.push_back(cand[j]);
  const size_t take = std::min(open.size(), size_t(count));
  std::partial_sort(open.begin(), open.begin() + take, open.end(), rank);
  std::vector<int64_t> best(open.begin(), open.begin() + take);
  std::sort(best.begin(), best.end());
  for (size_t j = 0; j < cand.size(); ++j)
    if (!chosen[j] && std::binary_search(best.begin(), best.end(), cand[j])) chosen[j] = 1;
}

void check_finite(const float* s, int64_t n, const char* which) {
  for (int64_t j = 0; j < n; ++j)
    if (std::isnan(s[j]))
      throw std::invalid_argument(std::string("lighthouse select: NaN ") + which + " score at pyramid index " +
                                  std::to_string(j));
}

// One (b, h) row: sq and sk are that head's [P] query scores and its group's key scores.
void select_row(int32_t* idx, const float* sq, const float* sk, const Geometry& g) {
  struct Emitted {
    double key;
    int64_t pyramid_index;
  };
  const int top = g.L - 1;
  int32_t* next_out = idx;
  for (int tile = 0; tile < g.tiles(); ++tile) {
    std::vector<Emitted> emitted;
    std::vector<int64_t> cand;  // level-local indices, children grouped by parent
    const int64_t C = g.coarse_per_tile();
    for (int64_t i = tile * C; i < (tile + 1) * C; ++i) cand.push_back(i);
    for (int l = top; l >= 1; --l) {
      std::vector<char> chosen(cand.size(), 0);
      choose_best(cand, chosen, kQuerySlots, ByScore{sq + g.offset(l)});
      choose_best(cand, chosen, kTileSlots - kQuerySlots, ByScore{sk + g.offset(l)});
      std::vector<int64_t> children;
      for (size_t j = 0; j < cand.size(); ++j) {
        emitted.push_back({g.sort_key(l, cand[j], chosen[j] != 0), g.offset(l) + cand[j]});
        if (chosen[j])
          for (int c = 0; c < g.p; ++c) children.push_back(cand[j] * g.p + c);
      }
      cand = std::move(children);
    }
    for (int64_t i : cand) emitted.push_back({g.sort_key(0, i, false), i});
    std::sort(emitted.begin(), emitted.end(), [](const Emitted& a, const Emitted& b) { return a.key < b.key; });
    for (const Emitted& e : emitted) *next_out++ = int32_t(e.pyramid_index);
  }
  if (next_out - idx != g.sub_len())
    throw std::logic_error("lighthouse select: emitted " + std::to_string(next_out - idx) + " entries, expected S = " +
                           std::to_string(g.sub_len()));
}

}  // namespace

void select(int32_t* idx, const float* sq, const float* sk, int B, int H, int Hkv, const Geometry& g) {
  g.validate();
  if (Hkv < 1 || H % Hkv != 0)
    throw std::invalid_argument("lighthouse select: H = " + std::to_string(H) + " is not a multiple of Hkv = " +
                                std::to_string(Hkv));
  const int64_t P = g.pyramid_size(), S = g.sub_len();
  check_finite(sq, int64_t(B) * H * P, "query");
  check_finite(sk, int64_t(B) * Hkv * P, "key");
  const int group = H / Hkv;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      select_row(idx + (size_t(b) * H + h) * S, sq + (size_t(b) * H + h) * P, sk + (size_t(b) * Hkv + h / group) * P,
                 g);
}

}  // namespace lh::lighthouse
