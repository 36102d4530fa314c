// Lighthouse norm scorer: level-0 scores are the L2 norms of the (post-RoPE) vectors, coarser
// levels take the MAX of the level-0 scores inside their window (not the norm of the pooled
// vector: a window with one loud token stays loud). Scores are constants of the backward pass.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lh::lighthouse {

// The max over a window of p^l base scores equals the max over its p children of level l-1 (max is
// associative and exact), which is cheaper.
void pool_scores(float* score, int rows, const Geometry& g) {
  const int64_t P = g.pyramid_size();
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    float* s = score + size_t(r) * P;
    for (int l = 1; l < g.L; ++l) {
      const float* finer = s + g.offset(l - 1);
      float* coarse = s + g.offset(l);
      for (int64_t i = 0; i < g.level_size(l); ++i)
        coarse[i] = *std::max_element(finer + i * g.p, finer + (i + 1) * g.p);
    }
  }
}

namespace {
// The sum of squares of one row in fp32, in an order that a GPU can follow in parallel: each
// kNormChunk-element chunk accumulated by fused multiply-adds in increasing d, then the chunk sums
// pairwise (neighbours, then pairs of pairs, ...; their count padded with zeros to a power of
// two). Both backends thus get the same bits, and the same selection. `part` is scratch.
float square_sum(const float* x, int D, std::vector<float>& part) {
  const int chunks = (D + kNormChunk - 1) / kNormChunk;
  size_t width = 1;
  while (width < size_t(chunks)) width *= 2;
  part.assign(width, 0.0f);
  for (int d = 0; d < D; ++d) part[d / kNormChunk] = std::fma(x[d], x[d], part[d / kNormChunk]);
  for (size_t span = 1; span < width; span *= 2)
    for (size_t c = 0; c < width; c += 2 * span) part[c] += part[c + span];
  return part[0];
}
}  // namespace

template <typename T> void norm_scores(float* score, const T* pyr, int B, int Hx, int D, const Geometry& g) {
  const int64_t P = g.pyramid_size();
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int x = 0; x < Hx; ++x) {
      const T* level0 = pyr + (size_t(b) * Hx + x) * P * D;
      float* s = score + (size_t(b) * Hx + x) * P;
      std::vector<float> row(static_cast<size_t>(D)), part;
      for (int64_t t = 0; t < g.N; ++t) {
        // Scores are computed from the row rounded to float whatever T is, so that float and
        // double pyramids of the same values give the same scores (and the same selection).
        for (int d = 0; d < D; ++d) row[d] = float(level0[t * D + d]);
        s[t] = std::sqrt(square_sum(row.data(), D, part));
      }
    }
  pool_scores(score, B * Hx, g);
}

template void norm_scores<float>(float*, const float*, int, int, int, const Geometry&);
template void norm_scores<double>(float*, const double*, int, int, int, const Geometry&);

}  // namespace lh::lighthouse
