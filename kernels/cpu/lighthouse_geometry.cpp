// Lighthouse geometry: validity rules with messages that name the numbers, index decoding, sort
// keys, and the decoding of an emitted index row.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <unordered_set>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lh::lighthouse {

std::string Geometry::problem() const {
  using std::to_string;
  if (N < 1) return "sequence length N = " + to_string(N) + " must be >= 1";
  if (L < 2) return "levels L = " + to_string(L) + " must be >= 2";
  if (p < 2 || (p & (p - 1)) != 0) return "pooling p = " + to_string(p) + " must be a power of two >= 2";
  if (k < kTileSlots || k % kTileSlots != 0)
    return "topk k = " + to_string(k) + " must be a positive multiple of " + to_string(kTileSlots);
  // p^(L-1) without overflow: stop as soon as it exceeds N (then N cannot be divisible by it).
  int64_t coarse = 1;
  for (int l = 1; l < L && coarse <= N; ++l) coarse *= p;
  if (coarse > N || N % coarse != 0)
    return "sequence length N = " + to_string(N) + " is not divisible by p^(L-1) = " + to_string(p) + "^" +
           to_string(L - 1) + (coarse > N ? " (which exceeds N)" : " = " + to_string(coarse));
  const int64_t coarse_entries = N / coarse;
  if (coarse_entries % tiles() != 0)
    return "the " + to_string(coarse_entries) + " coarsest entries (N / p^(L-1) = " + to_string(N) + " / " +
           to_string(coarse) + ") do not split into k / " + to_string(kTileSlots) + " = " + to_string(tiles()) +
           " equal tiles";
  if (coarse_entries / tiles() < kTileSlots)
    return "each of the k / " + to_string(kTileSlots) + " = " + to_string(tiles()) + " tiles holds " +
           to_string(coarse_entries / tiles()) + " coarsest entries (N / (tiles * p^(L-1)) = " + to_string(N) +
           " / (" + to_string(tiles()) + " * " + to_string(coarse) + ")), fewer than the " +
           to_string(kTileSlots) + " it must select; lower k or L, or raise N";
  if (pyramid_size() > std::numeric_limits<int32_t>::max())
    return "the pyramid of N = " + to_string(N) + " has " + to_string(pyramid_size()) +
           " entries, more than int32 indices address";
  return "";
}

void Geometry::validate() const {
  const std::string why = problem();
  if (!why.empty()) throw std::invalid_argument("lighthouse geometry: " + why);
}

void Geometry::decode(int64_t pyramid_index, int& level, int64_t& i) const {
  if (pyramid_index < 0 || pyramid_index >= pyramid_size())
    throw std::out_of_range("pyramid index " + std::to_string(pyramid_index) + " outside [0, " +
                            std::to_string(pyramid_size()) + ")");
  level = 0;
  while (pyramid_index >= offset(level + 1)) ++level;
  i = pyramid_index - offset(level);
}

double Geometry::sort_key(int level, int64_t i, bool selected) const {
  const double c = double(window(level));
  // Exact in a double (c*(i+1) < 2^31, 2^-l a power of two). A selected child (l-1, j) has key
  // <= c*(i+1) - 2^-(l-1) < c*(i+1) - 2^-l, so the parent follows all its descendants.
  if (selected && level >= 1) return c * double(i + 1) - std::ldexp(1.0, -level);
  return c * double(i);
}

std::vector<Entry> describe_row(const int32_t* idx_row, const Geometry& g) {
  const int64_t S = g.sub_len();
  const std::unordered_set<int32_t> present(idx_row, idx_row + S);
  std::vector<Entry> row;
  row.reserve(S);
  for (int64_t s = 0; s < S; ++s) {
    Entry e{};
    g.decode(idx_row[s], e.level, e.i);
    e.selected = e.level >= 1 && present.count(int32_t(g.offset(e.level - 1) + e.i * g.p)) > 0;
    e.key = g.sort_key(e.level, e.i, e.selected);
    row.push_back(e);
  }
  return row;
}

}  // namespace lh::lighthouse
