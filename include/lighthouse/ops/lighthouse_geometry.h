// The shape arithmetic of Lighthouse attention (docs/lighthouse.md): level
// sizes, pyramid offsets, the sub-sequence length S, tiles, and the validity rules. Header-only
// except for the messages, so that the Backend interface, the config validation and the CLI can
// all speak about one Geometry without pulling in the kernels.
#pragma once
#include <cstdint>
#include <string>

namespace lh::lighthouse {

// Entries SELECTED per tile and per level; a tile is what one k-budget slice of 128 covers, so the
// number of tiles is k / kTileSlots.
constexpr int kTileSlots = 128;
// Of those, the first kQuerySlots are chosen by the query score, the rest by the key score.
constexpr int kQuerySlots = kTileSlots / 2;

// One sequence's pyramid. Level l = 0..L-1 has N / p^l entries; entry i of level l covers the base
// positions [i * p^l, (i + 1) * p^l). Pyramid index of (l, i) = offset(l) + i.
struct Geometry {
  int N = 0;  // sequence length (base positions)
  int L = 2;  // levels, >= 2
  int p = 2;  // pooling factor, a power of two >= 2
  int k = kTileSlots;  // selection budget, a positive multiple of kTileSlots

  int64_t window(int l) const {  // p^l: base positions per entry of level l
    int64_t c = 1;
    for (int j = 0; j < l; ++j) c *= p;
    return c;
  }
  int64_t level_size(int l) const { return N / window(l); }
  int64_t offset(int l) const {  // off(l) = sum_{j<l} N / p^j
    int64_t o = 0;
    for (int j = 0; j < l; ++j) o += level_size(j);
    return o;
  }
  int64_t pyramid_size() const { return offset(L); }  // P: entries of all levels, level 0 included
  int tiles() const { return k / kTileSlots; }
  int64_t tile_len() const { return N / tiles(); }  // base positions per tile
  // C: coarsest-level entries per tile (the first level's candidates).
  int64_t coarse_per_tile() const { return level_size(L - 1) / tiles(); }
  // S = N / p^(L-1) + (L-1) * p * k: every coarsest entry plus, per finer level, the p children of
  // the kTileSlots selected entries of each tile.
  int64_t sub_len() const { return level_size(L - 1) + int64_t(L - 1) * p * k; }

  // Empty when the geometry is usable, else a sentence naming the rule and the numbers involved.
  std::string problem() const;
  // Throws std::invalid_argument(problem()) unless problem() is empty.
  void validate() const;
  // (level, index within level) of a pyramid index in [0, P).
  void decode(int64_t pyramid_index, int& level, int64_t& i) const;
  // The causal sort key of an emitted entry: window start for level-0 and rejected entries,
  // just before the window end (after all children) for selected ones (level >= 1).
  double sort_key(int level, int64_t i, bool selected) const;
};

}  // namespace lh::lighthouse
