// Config --set overrides, file loading and the shipped configs (docs/config.md).
#include <catch2/catch.hpp>

#include <filesystem>

#include <string>
#include <vector>

#include "config_test_util.h"
#include "lighthouse/config.h"

using lh::Config;
using nlohmann::json;

namespace {
using lh::testing::write_temp_file;
json minimal() { return lh::testing::minimal_config(); }
template <typename Fn>
void expect_error(Fn&& fn, const std::string& path, const std::string& keyword) {
  lh::testing::expect_config_error(fn, path, keyword);
}
}  // namespace

TEST_CASE("config: --set overrides", "[config]") {
  json j = minimal();
  SECTION("dotted paths, JSON values and the plain-string fallback") {
    Config::apply_override(j, "model.dim=512");
    Config::apply_override(j, "training.device= cpu ");        // not JSON: a (trimmed) string
    Config::apply_override(j, "logging.dir=\"runs/q\"");        // a JSON string
    Config::apply_override(j, "data.val=[\"a.bin\",\"b.bin\"]");
    Config::apply_override(j, "model.tied_embeddings=true");
    Config::apply_override(j, "optimizer.lr = 2e-3");
    const Config c = Config::from_json(j);
    CHECK(c.model.dim == 512);
    CHECK(c.training.device == "cpu");
    CHECK(c.logging.dir == "runs/q");
    CHECK(c.data.val == std::vector<std::string>{"a.bin", "b.bin"});
    CHECK(c.model.tied_embeddings);
    CHECK(c.optimizer.lr == 2e-3);
  }
  SECTION("list indices, bracketed or dotted; index == size appends") {
    Config::apply_override(j, "training.steps=300");
    Config::apply_override(j, "attention.phases[0].until_step=100");
    Config::apply_override(j, "attention.phases.1.until_step=300");
    Config::apply_override(j, "attention.phases[1].attention=dense");
    Config::apply_override(j, "attention.phases.0.until_step=150");
    const Config c = Config::from_json(j);
    REQUIRE(c.attention.phases.size() == 2);
    CHECK(c.attention.phases[0].until_step == 150);
    CHECK(c.attention.phases[1].until_step == 300);
    expect_error([&] { Config::apply_override(j, "attention.phases[5].until_step=1"); },
                 "attention.phases", "out of range");
    expect_error([&] { Config::apply_override(j, "training.steps[0]=1"); }, "training.steps",
                 "not a list");
    expect_error([&] { Config::apply_override(j, "training.steps.x=1"); }, "training.steps",
                 "cannot set key");
  }
  SECTION("overrides go through validation") {
    Config::apply_override(j, "model.dim=abc");
    expect_error([&] { Config::from_json(j); }, "model.dim", "expected an integer, got string");
    json k = minimal();
    Config::apply_override(k, "model.dimm=64");
    expect_error([&] { Config::from_json(k); }, "model.dimm", "unknown key");
    json l = minimal();
    Config::apply_override(l, "attention.phases[0].options.window=64");
    Config::apply_override(l, "attention.phases[0].until_step=1000");
    expect_error([&] { Config::from_json(l); }, "attention.phases[0].options.window", "no options");
  }
  SECTION("malformed assignments name the assignment") {
    for (const std::string bad : {"model.dim", "=5", " =5", "model..dim=1", ".dim=1", "model.=1",
                                  "phases[x]=1", "phases[1=1", "[0]=1", "a.[0]=1", "a[0]b=1"}) {
      json k = minimal();
      expect_error([&] { Config::apply_override(k, bad); }, bad, "malformed override");
    }
  }
}

TEST_CASE("load_file", "[config]") {
  expect_error([] { Config::load_file("/nonexistent/lh.json"); }, "/nonexistent/lh.json",
               "cannot open");
  const std::string syntax = write_temp_file("syntax.json", "{\n  \"model\": {\n    \"dim\": 64,,\n  }\n}\n");
  expect_error([&] { Config::load_file(syntax); }, syntax, "line 3, column");
  const std::string empty = write_temp_file("empty.json", "");
  expect_error([&] { Config::load_file(empty); }, empty, "JSON syntax error");
  const std::string invalid = write_temp_file("invalid.json", R"({"data":{"train":["a"]},"model":{"dim":0}})");
  expect_error([&] { Config::load_file(invalid); }, "model.dim", "(in " + invalid + ")");
  const std::string good = write_temp_file("good.json",
      "// comments are allowed\n{\"data\": {\"train\": [\"a\"]}, /* here too */ \"model\": {\"dim\": 64}}");
  CHECK(Config::load_file(good).model.dim == 64);
  CHECK(Config::load_file(good, {"model.dim=128", "model.n_heads=2", "model.n_kv_heads=2"}).model.dim == 128);
  expect_error([&] { Config::load_file(good, {"model.dim=x"}); }, "model.dim", "from --set model.dim=x");
  expect_error([&] { Config::load_file(good, {"model.dim=64", "model.n_heads=5"}); }, "model.n_heads",
               "from --set model.n_heads=5");
  expect_error([&] { Config::load_file(good, {"training.stepz=3"}); }, "training.stepz", "from --set training.stepz=3");
  // A key given twice would silently drop the first value (here a whole section): refused.
  const std::string twice = write_temp_file("twice.json", R"({"data":{"train":["a"]},"model":{"dim":64},"model":{}})");
  expect_error([&] { Config::load_file(twice); }, twice, "\"model\" appears twice");
  const std::string nested_twice = write_temp_file("nested_twice.json", R"({"model":{"dim":64,"n_layers":2,"dim":32}})");
  expect_error([&] { Config::load_file(nested_twice); }, nested_twice, "\"dim\" appears twice in the object at \"model\"");
  // Inside an array the element is named by its index, past values and arrays before it.
  const std::string phase_twice = write_temp_file("phase_twice.json",
      R"({"attention":{"phases":[{"until_step":5,"attention":"dense"},)"
      R"({"attention":"lighthouse","options":{"levels":3,"dense_layers":[0,1],"levels":4}}]}})");
  expect_error([&] { Config::load_file(phase_twice); }, phase_twice,
               "\"levels\" appears twice in the object at \"attention.phases[1].options\"");
  const std::string nested_arrays = write_temp_file("nested_arrays.json",
      R"({"a":[[0,{"x":1}],{"y":1,"y":2}]})");
  expect_error([&] { Config::load_file(nested_arrays); }, nested_arrays, "\"y\" appears twice in the object at \"a[1]\"");
  expect_error([&] { Config::load_file(twice); }, twice, "in the top-level object (again at line 1)");
  // The line of the second one, past comments, strings that hold quotes and colons, and values
  // that look like keys.
  const std::string lines = write_temp_file("lines.json",
      "// a \"comment\": with a colon\n{\n  \"data\": {\"train\": [\"a:\\\"b\"]},  /* \"model\": {} */\n"
      "  \"model\": {\"dim\": 64,\n    \"init_std\": 0.02},\n\n  \"model\": {}\n}\n");
  expect_error([&] { Config::load_file(lines); }, lines, "\"model\" appears twice in the top-level object (again at line 7)");
  const std::string same_key_apart =
      write_temp_file("apart.json", R"({"data":{"train":["a"], "val":[]},"model":{"dim":64},"training":{"steps":3}})");
  CHECK(Config::load_file(same_key_apart).training.steps == 3);  // equal names in different objects are fine
  // A rule across keys broken by an override of another key: the file and the overrides are named.
  expect_error([&] { Config::load_file(good, {"model.n_heads=5"}); }, "model.n_heads", "from --set model.n_heads=5");
  expect_error([&] { Config::load_file(good, {"model.max_seq_len=16"}); }, "data.seq_len",
               "(in " + good + " with --set model.max_seq_len=16)");
  // A wsd decay that would start inside the warm-up (default training.steps 1000: the last 800
  // steps decay) is refused for the configs users write; a checkpoint's stored config (from_json)
  // keeps loading.
  const std::vector<std::string> overlap = {"schedule.decay=\"wsd\"", "schedule.warmup_steps=300",
                                            "schedule.decay_fraction=0.8"};
  expect_error([&] { Config::load_file(good, overlap); }, "schedule.warmup_steps",
               "overlaps the wsd decay, which takes the last 800 of 1000 steps");
  json stored = Config::load_file(good).to_json();
  for (const std::string& o : overlap) Config::apply_override(stored, o);
  CHECK(Config::from_json(stored).schedule.warmup_steps == 300);
  CHECK(Config::load_file(good, {"schedule.decay=\"wsd\"", "schedule.warmup_steps=200",
                                 "schedule.decay_fraction=0.8"}).schedule.warmup_steps == 200);  // touches, no overlap
  // Nesting is limited in --set values too, and a // comment ends at \r as the parser ends it.
  expect_error([&] { Config::apply_override(stored, "data.train=" + std::string(1000, '[')); }, "data.train",
               "nested more than");
  const std::string cr = write_temp_file("cr.json", "//x\r" + std::string(100000, '[') + std::string(100000, ']'));
  expect_error([&] { Config::load_file(cr); }, cr, "nested more than");
  const std::string huge = write_temp_file("huge.json", R"({"optimizer":{"lr":1e999}})");
  expect_error([&] { Config::load_file(huge); }, huge, "out of range");
  const std::string deep = write_temp_file("deep.json", std::string(100000, '[') + std::string(100000, ']'));
  expect_error([&] { Config::load_file(deep); }, deep, "nested more than");
  const std::string brackets_in_text =  // brackets inside strings and comments do not count
      write_temp_file("text.json", "// [[[[\n{\"data\":{\"train\":[\"" + std::string(300, '[') + "\"]}}");
  CHECK(Config::load_file(brackets_in_text).data.train.size() == 1);
}

TEST_CASE("shipped configs parse", "[config]") {
  const std::string dir = std::string(LH_SOURCE_DIR) + "/configs/";
  const Config q = Config::load_file(dir + "quickstart.json");
  CHECK(q.model.dim == 128);
  CHECK(q.model.vocab_size == 257);
  CHECK(q.data.seq_len == 128);
  CHECK(q.logging.dir == "runs/quickstart");
  CHECK(q.grad_accum_steps(1) >= 1);
  const Config big = Config::load_file(dir + "llama270m_98k_dense.json");
  CHECK(big.model.dim == 1024);
  CHECK(big.model.n_layers == 30);
  CHECK(big.model.head_dim() == 128);
  CHECK(big.model.ffn_hidden == 1536);
  CHECK(big.data.seq_len == 98304);
  CHECK(big.model.max_seq_len == 98304);
  CHECK(big.training.device == "cuda");
  CHECK(big.phase_at(0).attention == "dense");
  CHECK(big.phase_at(big.training.steps - 1).attention == "dense");
  CHECK(Config::from_json(big.to_json()) == big);

  // Every shipped config, whatever its name: it loads (every rule, the Lighthouse geometry
  // against data.seq_len included), survives the round trip, and ends dense, so that what it
  // trains exports as an ordinary Llama.
  int shipped = 0, lighthouse = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    INFO(entry.path());
    const Config c = Config::load_file(entry.path().string());
    CHECK(Config::from_json(c.to_json()) == c);
    CHECK(c.phase_at(c.training.steps - 1).attention == "dense");
    lighthouse += c.phase_at(0).attention == "lighthouse";
    ++shipped;
  }
  CHECK(shipped >= 5);
  CHECK(lighthouse >= 2);
}
