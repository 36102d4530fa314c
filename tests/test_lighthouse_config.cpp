// Validation of the "lighthouse" attention options at config load: each knob on its own, then the
// rules that tie them to data.seq_len and model.n_layers, all with path-named errors.
#include <catch2/catch.hpp>

#include "config_test_util.h"

using lh::testing::expect_config_error;
using nlohmann::json;

namespace {
const char* kOptions = "attention.phases[0].options";

// seq_len 1024, 4 layers; the first phase runs Lighthouse with `options`, the second is dense.
json with_options(const json& options, int seq_len = 1024) {
  json j = lh::testing::minimal_config();
  j["model"] = {{"n_layers", 4}, {"max_seq_len", 131072}};
  j["data"]["seq_len"] = seq_len;
  j["training"] = {{"steps", 10}};
  j["attention"]["phases"] = json::array({{{"until_step", 5}, {"attention", "lighthouse"}, {"options", options}},
                                          {{"until_step", 10}, {"attention", "dense"}}});
  return j;
}
void rejects(const json& options, const std::string& key, const std::string& keyword, int seq_len = 1024) {
  const std::string path = key.empty() ? kOptions : std::string(kOptions) + "." + key;
  expect_config_error([&] { lh::Config::from_json(with_options(options, seq_len)); }, path, keyword);
}
const json kValid = {{"levels", 2}, {"pooling", 2}, {"topk", 256}, {"scorer", "norm"}, {"dense_layers", {0, 3}}};
}  // namespace

TEST_CASE("lighthouse options: a valid phase loads and round-trips", "[cpu][lighthouse][config]") {
  const lh::Config c = lh::Config::from_json(with_options(kValid));
  REQUIRE(c.attention.phases.size() == 2);
  CHECK(c.phase_at(4).attention == "lighthouse");
  CHECK(c.phase_at(5).attention == "dense");
  CHECK(c.phase_at(0).options == kValid);
  CHECK(lh::Config::from_json(c.to_json()) == c);
  CHECK_NOTHROW(lh::Config::from_json(with_options(json::object(), 98304)));  // the paper's defaults
}

TEST_CASE("lighthouse options: each knob is range-checked", "[cpu][lighthouse][config]") {
  auto with = [](const char* key, const json& value) {
    json o = kValid;
    o[key] = value;
    return o;
  };
  rejects(with("levels", 1), "levels", ">= 2, got 1");
  rejects(with("pooling", 3), "pooling", "power of two >= 2, got 3");
  rejects(with("pooling", 1), "pooling", "got 1");
  rejects(with("topk", 100), "topk", "multiple of 128, got 100");
  rejects(with("topk", 0), "topk", "got 0");
  rejects(with("scorer", "dilated"), "scorer", "\"dilated\"");
  rejects(with("levels", "two"), "levels", "string");
  rejects(with("dense_layers", 1), "dense_layers", "list of layer indices");
  rejects(with("dense_layers", json::array({0, 0})), "dense_layers[1]", "listed twice");
  rejects(with("dense_layers", json::array({1, 4})), "dense_layers[1]", "model.n_layers = 4");
  rejects(with("dense_layers", json::array({-1})), "dense_layers[0]", "-1");
  rejects(with("dense_layers", json::array({1.5})), "dense_layers[0]", "1.5");
  rejects(with("window", 3), "window", "unknown");
}

TEST_CASE("lighthouse options: shape rules against data.seq_len name the numbers", "[cpu][lighthouse][config]") {
  // seq_len not divisible by p^(L-1) = 16.
  rejects({{"levels", 3}, {"pooling", 4}, {"topk", 128}}, "", "data.seq_len = 1000", 1000);
  rejects({{"levels", 3}, {"pooling", 4}, {"topk", 128}}, "", "p^(L-1) = 4^2 = 16", 1000);
  // 512 coarsest entries do not split into 3 tiles.
  rejects({{"levels", 2}, {"pooling", 2}, {"topk", 384}}, "", "512 coarsest entries", 1024);
  // 4 tiles of 64 coarsest entries each: fewer than the 128 a tile must select.
  rejects({{"levels", 3}, {"pooling", 2}, {"topk", 512}}, "", "holds 64 coarsest entries", 1024);
  // The paper's recipe needs 98K tokens: at 8192 the 12 tiles hold 42.67 entries.
  rejects(json::object(), "", "topk = 1536", 8192);
}
