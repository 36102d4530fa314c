// `lighthouse select` from score files: the same indices as the library, errors naming the file
// and the byte counts, and the SVG drawing.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include <sys/wait.h>

#include "lighthouse/ops/lighthouse_reference.h"
#include "support/run_binary.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;

namespace {
std::pair<int, std::string> run_select(const std::string& args, const fs::path& cwd) {
  const auto r = lh::testing::run_lighthouse("select " + args, cwd);
  return {r.code, r.output};
}
template <typename T> void write_raw(const fs::path& p, const std::vector<T>& v) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
}
}  // namespace

TEST_CASE("lighthouse select: score files in, the library's indices out", "[cpu][lighthouse][cli]") {
  lh::testing::TempDir dir;
  const lh::lighthouse::Geometry g{2048, 3, 2, 256};
  const int H = 3;
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(0.0f, 4.0f);
  std::vector<float> q(size_t(H) * g.N), k(q.size());
  for (auto& x : q) x = u(rng);
  for (auto& x : k) x = u(rng);
  write_raw(dir.path() / "q.f32", q);
  write_raw(dir.path() / "k.f32", k);
  const std::string shape = "--heads 3 --seq-len 2048 --levels 3 --pooling 2 --topk 256";

  const auto [code, output] = run_select("--scores-q q.f32 --scores-k k.f32 " + shape + " --out idx.i32 --svg sel.svg --head 1", dir.path());
  INFO(output);
  REQUIRE(code == 0);
  std::vector<float> sq(size_t(H) * g.pyramid_size()), sk(sq.size());
  for (int h = 0; h < H; ++h) {
    std::copy_n(q.begin() + h * g.N, g.N, sq.begin() + h * g.pyramid_size());
    std::copy_n(k.begin() + h * g.N, g.N, sk.begin() + h * g.pyramid_size());
  }
  lh::lighthouse::pool_scores(sq.data(), H, g);
  lh::lighthouse::pool_scores(sk.data(), H, g);
  std::vector<int32_t> expect(size_t(H) * g.sub_len());
  lh::lighthouse::select(expect.data(), sq.data(), sk.data(), 1, H, H, g);
  std::ifstream in(dir.path() / "idx.i32", std::ios::binary);
  std::vector<int32_t> got(expect.size() + 1);
  in.read(reinterpret_cast<char*>(got.data()), std::streamsize(got.size() * sizeof(int32_t)));
  CHECK(size_t(in.gcount()) == expect.size() * sizeof(int32_t));
  got.resize(expect.size());
  CHECK(got == expect);
  std::stringstream svg;
  svg << std::ifstream(dir.path() / "sel.svg").rdbuf();
  CHECK_THAT(svg.str(), Catch::StartsWith("<svg") && Catch::Contains("level 2") && Catch::EndsWith("</svg>\n"));

  SECTION("a score file of the wrong size is named with both byte counts") {
    q.pop_back();
    write_raw(dir.path() / "short.f32", q);
    const auto [bad, msg] = run_select("--scores-q short.f32 --scores-k k.f32 " + shape + " --out x.i32", dir.path());
    CHECK(bad != 0);
    CHECK_THAT(msg, Catch::Contains("short.f32") && Catch::Contains("24576 bytes") && Catch::Contains("got 24572"));
  }
  SECTION("an invalid geometry is refused with its numbers") {
    const auto [bad, msg] = run_select("--scores-q q.f32 --scores-k k.f32 --heads 3 --seq-len 2048 --levels 3 "
                                       "--pooling 2 --topk 1024 --out x.i32", dir.path());
    CHECK(bad != 0);
    CHECK_THAT(msg, Catch::Contains("holds 64"));
  }
}
