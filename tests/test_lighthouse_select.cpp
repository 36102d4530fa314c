// Lighthouse geometry and selection against the rules of docs/lighthouse.md, with a brute-force
// cascade written here (independently of kernels/cpu/lighthouse_select.cpp) as the oracle.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "lighthouse/ops/lighthouse_reference.h"

namespace lhl = lh::lighthouse;

namespace {

// Valid (N, L, p, k) shapes: single and multiple tiles, 2..4 levels, p = 2, 4, 8.
const std::vector<lhl::Geometry> kShapes = {
    {256, 2, 2, 128}, {512, 2, 2, 128},  {512, 2, 4, 128},  {1024, 3, 2, 128}, {1024, 2, 2, 256},
    {2048, 3, 4, 128}, {2048, 3, 2, 256}, {4096, 4, 2, 256}, {4096, 3, 4, 256}, {8192, 2, 8, 512},
    {6144, 2, 4, 384}};

// Scores drawn from a few levels so that ties are everywhere (the tie rule matters).
std::vector<float> tied_scores(size_t n, std::mt19937& rng, int distinct) {
  std::uniform_int_distribution<int> pick(0, distinct - 1);
  std::vector<float> s(n);
  for (auto& x : s) x = float(pick(rng)) / float(distinct);
  return s;
}

// The cascade, brute force: sort ALL open candidates by (score desc, pyramid index asc) and take
// the first 64; again by the key score for the next 64; every candidate emitted; then std::sort by
// the causal key. Returns the (b, h) row of pyramid indices.
std::vector<int32_t> brute_force_row(const float* sq, const float* sk, const lhl::Geometry& g) {
  std::vector<int32_t> row;
  for (int tile = 0; tile < g.tiles(); ++tile) {
    std::vector<std::pair<double, int32_t>> emitted;  // (key, pyramid index)
    std::vector<int64_t> cand;
    for (int64_t i = tile * g.coarse_per_tile(); i < (tile + 1) * g.coarse_per_tile(); ++i) cand.push_back(i);
    for (int l = g.L - 1; l >= 0; --l) {
      const int64_t off = g.offset(l);
      std::set<int64_t> chosen;
      if (l >= 1) {
        for (const float* s : {sq, sk}) {
          std::vector<int64_t> open;
          for (int64_t i : cand)
            if (!chosen.count(i)) open.push_back(i);
          std::sort(open.begin(), open.end(), [&](int64_t a, int64_t b) {
            if (s[off + a] != s[off + b]) return s[off + a] > s[off + b];
            return a < b;
          });
          for (size_t j = 0; j < 64 && j < open.size(); ++j) chosen.insert(open[j]);
        }
      }
      std::vector<int64_t> next;
      const double c = double(g.window(l));
      for (int64_t i : cand) {
        const bool sel = chosen.count(i) > 0;
        emitted.push_back({sel ? c * (i + 1) - std::pow(2.0, -l) : c * i, int32_t(off + i)});
        if (sel)
          for (int j = 0; j < g.p; ++j) next.push_back(i * g.p + j);
      }
      cand = next;
    }
    std::sort(emitted.begin(), emitted.end());
    for (const auto& e : emitted) row.push_back(e.second);
  }
  return row;
}

}  // namespace

TEST_CASE("lighthouse geometry: S, offsets and the paper's examples", "[cpu][lighthouse]") {
  for (const auto& g : kShapes) {
    INFO("N=" << g.N << " L=" << g.L << " p=" << g.p << " k=" << g.k);
    REQUIRE(g.problem().empty());
    int64_t coarse = g.N;
    for (int l = 1; l < g.L; ++l) coarse /= g.p;
    CHECK(g.sub_len() == coarse + int64_t(g.L - 1) * g.p * g.k);
    int64_t off = 0;
    for (int l = 0; l < g.L; ++l) {
      CHECK(g.offset(l) == off);
      off += g.N / g.window(l);
    }
    CHECK(g.pyramid_size() == off);
  }
  CHECK(lhl::Geometry{98304, 3, 4, 1536}.sub_len() == 18432);
  CHECK(lhl::Geometry{524288, 3, 4, 4096}.sub_len() == 65536);
  CHECK(lhl::Geometry{98304, 3, 4, 1536}.problem().empty());
}

TEST_CASE("lighthouse geometry: invalid shapes are refused with their numbers", "[cpu][lighthouse]") {
  CHECK_THAT(lhl::Geometry({256, 1, 2, 128}).problem(), Catch::Contains("L = 1"));
  CHECK_THAT(lhl::Geometry({256, 2, 3, 128}).problem(), Catch::Contains("p = 3"));
  CHECK_THAT(lhl::Geometry({256, 2, 2, 100}).problem(), Catch::Contains("k = 100"));
  CHECK_THAT(lhl::Geometry({1000, 3, 4, 128}).problem(), Catch::Contains("N = 1000") && Catch::Contains("16"));
  CHECK_THAT(lhl::Geometry({1024, 2, 2, 384}).problem(), Catch::Contains("512") && Catch::Contains("3"));
  CHECK_THAT(lhl::Geometry({1024, 2, 2, 1024}).problem(), Catch::Contains("holds 64") && Catch::Contains("8 tiles"));
  CHECK_THROWS_WITH(lhl::Geometry({128, 2, 2, 128}).validate(), Catch::Contains("holds 64"));
}

TEST_CASE("lighthouse selection: structure and the exact cascade, against brute force", "[cpu][lighthouse]") {
  std::mt19937 rng(7);
  const int B = 2, H = 4, Hkv = 2;  // GQA: heads 0,1 share key scores of group 0
  for (const auto& g : kShapes) {
    INFO("N=" << g.N << " L=" << g.L << " p=" << g.p << " k=" << g.k);
    const int64_t P = g.pyramid_size(), S = g.sub_len();
    const int distinct = GENERATE(3, 1000);
    const auto sq = tied_scores(size_t(B) * H * P, rng, distinct);
    const auto sk = tied_scores(size_t(B) * Hkv * P, rng, distinct);
    std::vector<int32_t> idx(size_t(B) * H * S, -1);
    lhl::select(idx.data(), sq.data(), sk.data(), B, H, Hkv, g);

    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        const int32_t* row = idx.data() + (size_t(b) * H + h) * S;
        const auto entries = lhl::describe_row(row, g);
        REQUIRE(int64_t(entries.size()) == S);
        REQUIRE(std::set<int32_t>(row, row + S).size() == size_t(S));  // no entry twice

        std::vector<int> covered(g.N, 0);
        std::map<std::pair<int, int>, int> selected_per_tile_level;
        const int64_t per_tile = S / g.tiles();
        for (int64_t s = 0; s < S; ++s) {
          const auto& e = entries[s];
          if (s > 0) CHECK(entries[s - 1].key < e.key);  // causal order, strictly
          const int64_t tile = s / per_tile, c = g.window(e.level);
          CHECK(c * e.i >= tile * g.tile_len());  // the window lies inside its tile
          CHECK(c * (e.i + 1) <= (tile + 1) * g.tile_len());
          if (e.selected) ++selected_per_tile_level[{int(tile), e.level}];
          if (!e.selected)
            for (int64_t t = c * e.i; t < c * (e.i + 1); ++t) ++covered[t];
        }
        CHECK(std::all_of(covered.begin(), covered.end(), [](int n) { return n == 1; }));
        for (int tile = 0; tile < g.tiles(); ++tile)
          for (int l = 1; l < g.L; ++l) CHECK(selected_per_tile_level[{tile, l}] == lhl::kTileSlots);

        const auto expect =
            brute_force_row(sq.data() + (size_t(b) * H + h) * P, sk.data() + (size_t(b) * Hkv + h / (H / Hkv)) * P, g);
        CHECK(std::equal(expect.begin(), expect.end(), row));
      }
  }
}

TEST_CASE("lighthouse selection: a hand-checked tie break and NaN refusal", "[cpu][lighthouse]") {
  // One tile of 256 coarsest entries (L = 2): 128 of them are selected.
  const lhl::Geometry g{512, 2, 2, 128};
  const int64_t off1 = g.offset(1);
  std::vector<float> sq(g.pyramid_size(), 1.0f), sk(g.pyramid_size(), 1.0f);
  std::vector<int32_t> idx(g.sub_len());
  SECTION("all scores equal: the lowest indices win, 0..63 by query then 64..127 by key") {
    lhl::select(idx.data(), sq.data(), sk.data(), 1, 1, 1, g);
    for (int i = 0; i < 128; ++i) {  // (2i), (2i+1), then their selected parent
      CHECK(idx[3 * i] == 2 * i);
      CHECK(idx[3 * i + 1] == 2 * i + 1);
      CHECK(idx[3 * i + 2] == off1 + i);
    }
    for (int i = 128; i < 256; ++i) CHECK(idx[384 + (i - 128)] == off1 + i);  // rejected, in order
  }
  SECTION("a higher score beats a lower index, for either score") {
    sq[off1 + 200] = 2.0f;  // taken by the query pass, which then fills up with 0..62
    sk[off1 + 250] = 2.0f;  // taken first by the key pass, which then takes 63..125
    lhl::select(idx.data(), sq.data(), sk.data(), 1, 1, 1, g);
    std::set<int64_t> selected;
    for (const auto& e : lhl::describe_row(idx.data(), g))
      if (e.selected) selected.insert(e.i);
    std::set<int64_t> expect{200, 250};
    for (int i = 0; i <= 125; ++i) expect.insert(i);
    CHECK(selected == expect);
  }
  SECTION("NaN scores are refused") {
    sq[5] = NAN;
    CHECK_THROWS_WITH(lhl::select(idx.data(), sq.data(), sk.data(), 1, 1, 1, g), Catch::Contains("NaN query"));
  }
}
