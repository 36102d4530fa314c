// Config validation, defaults, the to_json round trip and derived quantities (docs/config.md).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "config_test_util.h"
#include "lighthouse/config.h"

using lh::Config;
using nlohmann::json;

namespace {
json minimal() { return lh::testing::minimal_config(); }
template <typename Fn>
void expect_error(Fn&& fn, const std::string& path, const std::string& keyword) {
  lh::testing::expect_config_error(fn, path, keyword);
}
}  // namespace

TEST_CASE("malformed configs name the culprit's JSON path", "[config]") {
  struct Case {
    const char* patch;  // JSON merge patch applied to minimal() (null deletes a key)
    const char* path;
    const char* keyword;
  };
  const Case cases[] = {
      {R"({"model":{"dimm":64}})", "model.dimm", "unknown key"},
      {R"({"bogus":1})", "bogus", "unknown key"},
      {R"({"model":{"dim":"abc"}})", "model.dim", "expected an integer, got string \"abc\""},
      {R"({"model":{"dim":3.5}})", "model.dim", "expected an integer"},
      {R"({"model":{"dim":true}})", "model.dim", "got boolean"},
      {R"({"model":{"dim":0}})", "model.dim", ">= 1"},
      {R"({"model":{"n_layers":-1}})", "model.n_layers", ">= 1"},
      {R"({"model":{"ffn_hidden":0}})", "model.ffn_hidden", ">= 1"},
      {R"({"model":{"vocab_size":0}})", "model.vocab_size", ">= 1"},
      {R"({"model":{"dim":256,"n_heads":6}})", "model.n_heads", "does not divide model.dim"},
      {R"({"model":{"dim":12,"n_heads":4}})", "model.dim", "even"},
      {R"({"model":{"n_heads":4,"n_kv_heads":8}})", "model.n_kv_heads", "<= model.n_heads"},
      {R"({"model":{"dim":384,"n_heads":6,"n_kv_heads":4}})", "model.n_kv_heads", "does not divide"},
      {R"({"model":{"rope_theta":0}})", "model.rope_theta", "> 0"},
      {R"({"model":{"norm_eps":-1e-5}})", "model.norm_eps", "> 0"},
      {R"({"model":{"init_std":0}})", "model.init_std", "> 0"},
      {R"({"model":{"tied_embeddings":1}})", "model.tied_embeddings", "expected a boolean"},
      {R"({"model":[1,2]})", "model", "expected an object"},
      {R"({"data":{"seq_len":2048}})", "data.seq_len", "exceeds model.max_seq_len"},
      {R"({"data":{"seq_len":0}})", "data.seq_len", ">= 1"},
      {R"({"data":{"train":[]}})", "data.train", "at least one"},
      {R"({"data":{"train":null}})", "data.train", "required"},
      {R"({"data":{"train":["a.bin",3]}})", "data.train[1]", "expected a string"},
      {R"({"data":{"train":{"a":1}}})", "data.train", "expected a list of strings"},
      {R"({"data":{"val":[""]}})", "data.val[0]", "must not be empty"},
      {R"({"data":{"micro_batch":0}})", "data.micro_batch", ">= 1"},
      {R"({"model":{"max_seq_len":1048576},"data":{"seq_len":1048576,"micro_batch":2048}})", "data.micro_batch",
       "2048 x data.seq_len 1048576 tokens per micro-batch exceed 2147483647"},
      {R"({"optimizer":{"lr":0}})", "optimizer.lr", "> 0"},
      {R"({"optimizer":{"lr":"fast"}})", "optimizer.lr", "expected a number"},
      {R"({"optimizer":{"beta1":1.0}})", "optimizer.beta1", "[0, 1)"},
      {R"({"optimizer":{"beta2":-0.1}})", "optimizer.beta2", "[0, 1)"},
      {R"({"optimizer":{"eps":0}})", "optimizer.eps", "> 0"},
      {R"({"optimizer":{"weight_decay":-0.1}})", "optimizer.weight_decay", ">= 0"},
      {R"({"optimizer":{"grad_clip":-1}})", "optimizer.grad_clip", ">= 0"},
      {R"({"schedule":{"decay":"exp"}})", "schedule.decay", "must be one of"},
      {R"({"schedule":{"warmup_steps":1000}})", "schedule.warmup_steps", "training.steps"},
      {R"({"schedule":{"warmup_steps":-1}})", "schedule.warmup_steps", ">= 0"},
      {R"({"schedule":{"min_lr":0.01}})", "schedule.min_lr", "optimizer.lr"},
      {R"({"schedule":{"min_lr":-1e-4}})", "schedule.min_lr", ">= 0"},
      {R"({"schedule":{"decay_fraction":0}})", "schedule.decay_fraction", "(0, 1]"},
      {R"({"schedule":{"decay_fraction":1.5}})", "schedule.decay_fraction", "(0, 1]"},
      {R"({"model":{"n_layers":2147483647}})", "model.n_layers", "must be <= 65536"},
      {R"({"model":{"dim":65536,"n_heads":512,"n_kv_heads":512,"n_layers":65536}})", "model", "more than 2^40"},
      {R"({"training":{"steps":0}})", "training.steps", ">= 1"},
      {R"({"training":{"steps":3000000000}})", "training.steps", "32-bit"},
      {R"({"training":{"global_batch":-8}})", "training.global_batch", ">= 0"},
      {R"({"training":{"grad_accum":-1}})", "training.grad_accum", ">= 0"},
      {R"({"training":{"global_batch":10}})", "training.global_batch", "multiple of data.micro_batch"},
      {R"({"training":{"global_batch":16,"grad_accum":3}})", "training.global_batch", "multiple"},
      {R"({"training":{"seed":-1}})", "training.seed", "non-negative"},
      {R"({"training":{"seed":1.5}})", "training.seed", "integer"},
      {R"({"training":{"eval_interval":-1}})", "training.eval_interval", ">= 0"},
      {R"({"training":{"eval_batches":0}})", "training.eval_batches", ">= 1"},
      {R"({"training":{"checkpoint_interval":-5}})", "training.checkpoint_interval", ">= 0"},
      {R"({"training":{"keep_last":-1}})", "training.keep_last", ">= 0"},
      {R"({"training":{"grad_bucket_mb":0}})", "training.grad_bucket_mb", "(0, 65536]"},
      {R"({"training":{"device":"tpu"}})", "training.device", "must be one of auto, cpu, cuda"},
      {R"({"training":{"attention_backward":"fast"}})", "training.attention_backward", "must be one of cudnn, flash, auto"},
      {R"({"training":{"recompute":"some"}})", "training.recompute", "must be one of auto, none, selective, full"},
      {R"({"training":{"recompute":1}})", "training.recompute", "or a boolean, got number 1"},
      {R"({"logging":{"interval":0}})", "logging.interval", ">= 1"},
      {R"({"logging":{"dir":""}})", "logging.dir", "must not be empty"},
      {R"({"logging":{"dir":5}})", "logging.dir", "expected a string"},
      {R"({"attention":{"phasez":[]}})", "attention.phasez", "unknown key"},
      {R"({"attention":{"phases":{"until_step":5}}})", "attention.phases", "expected a list"},
      {R"({"attention":{"phases":[5]}})", "attention.phases[0]", "expected an object"},
      {R"({"attention":{"phases":[{"attention":"dense"}]}})", "attention.phases[0].until_step",
       "required"},
      {R"({"attention":{"phases":[{"until_step":0}]}})", "attention.phases[0].until_step", ">= 1"},
      {R"({"attention":{"phases":[{"until_step":500},{"until_step":400}]}})",
       "attention.phases[1].until_step", "greater than the previous"},
      {R"({"attention":{"phases":[{"until_step":500}]}})", "attention.phases[0].until_step",
       "whole run"},
      {R"({"attention":{"phases":[{"until_step":1000,"attention":"sparse"}]}})",
       "attention.phases[0].attention", "unknown attention backend"},
      {R"({"attention":{"phases":[{"until_step":1000,"options":{"window":4}}]}})",
       "attention.phases[0].options.window", "takes no options"},
      {R"({"attention":{"phases":[{"until_step":1000,"options":[]}]}})",
       "attention.phases[0].options", "expected an object"},
      {R"({"attention":{"phases":[{"until_step":1000,"extra":1}]}})", "attention.phases[0].extra",
       "unknown key"},
  };
  STATIC_REQUIRE(sizeof(cases) / sizeof(cases[0]) >= 25);
  for (const Case& c : cases) {
    DYNAMIC_SECTION(c.patch) {
      json j = minimal();
      j.merge_patch(json::parse(c.patch));
      expect_error([&] { Config::from_json(j); }, c.path, c.keyword);
    }
  }
  SECTION("root must be an object") {
    expect_error([] { Config::from_json(json::array()); }, "(root)", "expected an object");
  }
  SECTION("a null section is not a missing one") {
    json j = minimal();
    j["model"] = nullptr;
    expect_error([&] { Config::from_json(j); }, "model", "expected an object, got null");
  }
  SECTION("unknown keys list the known ones and suggest the closest") {
    json j = minimal();
    j["model"]["dimm"] = 64;
    expect_error([&] { Config::from_json(j); }, "model.dimm", "did you mean \"dim\"");
    expect_error([&] { Config::from_json(j); }, "model.dimm", "known: dim, n_layers, n_heads");
  }
}

TEST_CASE("defaults, lenient forms and the to_json round trip", "[config]") {
  const Config c = Config::from_json(minimal());
  Config expected;
  expected.data.train = {"data/train_*.bin"};
  CHECK(c == expected);
  CHECK(c.model.dim == 256);
  CHECK(c.optimizer.lr == 1e-3);
  CHECK(c.schedule.decay == "cosine");
  CHECK(c.training.seed == 1337);
  CHECK(c.training.device == "auto");
  CHECK(c.attention.phases.empty());
  CHECK(c.logging.dir == "runs/default");

  SECTION("to_json is complete") {
    const json j = c.to_json();
    CHECK(j.size() == 7);
    CHECK(j["model"].size() == 11);
    CHECK(j["data"].size() == 4);
    CHECK(j["optimizer"].size() == 6);
    CHECK(j["schedule"].size() == 4);
    CHECK(j["training"].size() == 13);
    CHECK(j["attention"].size() == 1);
    CHECK(j["logging"].size() == 2);
    CHECK(Config::from_json(j) == c);
  }
  SECTION("non-default values survive to_json, dump and parse") {
    json j = minimal();
    j.merge_patch(json::parse(R"({
      "model": {"dim": 96, "n_layers": 3, "n_heads": 6, "n_kv_heads": 2, "ffn_hidden": 200,
                "vocab_size": 300, "rope_theta": 500000.0, "norm_eps": 1e-6, "max_seq_len": 512,
                "tied_embeddings": true, "init_std": 0.0123456789},
      "data": {"train": ["a.bin", "dir/"], "val": ["v.bin"], "seq_len": 384, "micro_batch": 3},
      "optimizer": {"lr": 0.0007, "beta1": 0.8, "beta2": 0.99, "eps": 1e-10, "weight_decay": 0,
                    "grad_clip": 0.5},
      "schedule": {"decay": "wsd", "warmup_steps": 7, "min_lr": 1e-5, "decay_fraction": 0.3},
      "training": {"steps": 90, "global_batch": 12, "grad_accum": 2, "seed": 18446744073709551615,
                   "eval_interval": 0, "eval_batches": 2, "checkpoint_interval": 30, "keep_last": 0,
                   "device": "cpu", "attention_backward": "flash"},
      "attention": {"phases": [{"until_step": 50}, {"until_step": 90, "attention": "dense"}]},
      "logging": {"dir": "runs/x", "interval": 5}})"));
    const Config a = Config::from_json(j);
    CHECK(a.training.seed == 18446744073709551615ull);
    CHECK(a.training.attention_backward == "flash");
    CHECK(c.training.attention_backward == "auto");
    j["training"]["attention_backward"] = "cudnn";
    CHECK(Config::from_json(j).training.attention_backward == "cudnn");
    CHECK(a.model.init_std == 0.0123456789);
    CHECK(a != c);
    const Config b = Config::from_json(json::parse(a.to_json().dump()));
    CHECK(b == a);
    CHECK(b.to_json() == a.to_json());
  }
  SECTION("integral floats are integers; a single string is a one-element list") {
    json j = minimal();
    j.merge_patch(json::parse(R"({"model": {"dim": 128.0}, "training": {"steps": 1e3},
                                  "data": {"train": "only.bin", "val": "v.bin"}})"));
    const Config a = Config::from_json(j);
    CHECK(a.model.dim == 128);
    CHECK(a.training.steps == 1000);
    CHECK(a.data.train == std::vector<std::string>{"only.bin"});
    CHECK(a.data.val == std::vector<std::string>{"v.bin"});
    json k = minimal();
    k["optimizer"]["lr"] = 1;  // an integer where a number is expected is fine
    CHECK(Config::from_json(k).optimizer.lr == 1.0);
  }
  SECTION("training.recompute takes a mode name or the original boolean") {
    const auto mode = [](const char* value) {
      json j = minimal();
      j["training"]["recompute"] = json::parse(value);
      return Config::from_json(j).training.recompute;
    };
    CHECK(c.training.recompute == lh::Recompute::kAuto);
    CHECK(mode(R"("auto")") == lh::Recompute::kAuto);
    CHECK(mode("true") == lh::Recompute::kFull);
    CHECK(mode("false") == lh::Recompute::kNone);
    CHECK(mode(R"("none")") == lh::Recompute::kNone);
    CHECK(mode(R"("selective")") == lh::Recompute::kSelective);
    CHECK(mode(R"("full")") == lh::Recompute::kFull);
    json j = minimal();
    j["training"]["recompute"] = "selective";
    CHECK(Config::from_json(j).to_json()["training"]["recompute"] == "selective");
  }
}

TEST_CASE("derived batch arithmetic", "[config]") {
  Config c = Config::from_json(minimal());  // micro_batch 4
  CHECK(c.grad_accum_steps(1) == 1);
  CHECK(c.global_batch_sequences(8) == 32);
  c.training.grad_accum = 4;
  CHECK(c.grad_accum_steps(2) == 4);
  CHECK(c.global_batch_sequences(2) == 32);
  c.training.grad_accum = 0;
  c.training.global_batch = 64;
  CHECK(c.grad_accum_steps(1) == 16);
  CHECK(c.grad_accum_steps(2) == 8);
  CHECK(c.grad_accum_steps(4) == 4);
  CHECK(c.grad_accum_steps(16) == 1);
  CHECK(c.global_batch_sequences(4) == 64);
  expect_error([&] { c.grad_accum_steps(3); }, "training.global_batch", "not divisible");
  expect_error([&] { c.grad_accum_steps(32); }, "training.global_batch", "not divisible");
  c.training.grad_accum = 4;  // both given: must match exactly at this world size
  CHECK(c.grad_accum_steps(4) == 4);
  expect_error([&] { c.grad_accum_steps(2); }, "training.global_batch", "training.grad_accum");
  expect_error([&] { c.grad_accum_steps(0); }, "world_size", ">= 1");
}

TEST_CASE("attention phases", "[config]") {
  Config c = Config::from_json(minimal());
  CHECK(c.phase_at(0).attention == "dense");  // no phases: dense for the whole run
  CHECK(c.phase_at(123456).attention == "dense");
  CHECK(c.phase_index_at(5) == 0);
  json j = minimal();
  j["attention"]["phases"] = json::parse(
      R"([{"until_step":100},{"until_step":200,"attention":"dense","options":{}},{"until_step":1000}])");
  c = Config::from_json(j);
  CHECK(c.phase_index_at(0) == 0);
  CHECK(c.phase_index_at(99) == 0);
  CHECK(c.phase_index_at(100) == 1);
  CHECK(c.phase_index_at(199) == 1);
  CHECK(c.phase_index_at(200) == 2);
  CHECK(c.phase_index_at(999) == 2);
  CHECK(c.phase_index_at(5000) == 2);  // the last phase extends to the end
  CHECK(c.phase_at(150).until_step == 200);
  CHECK(c.phase_at(150).options == json::object());
}

TEST_CASE("every model key is either architecture or a setting a resume may change", "[config]") {
  // A key in neither list would change silently across a resume.
  lh::ModelConfig a;
  const json keys = Config().to_json()["model"];
  size_t covered = 0;
  for (const auto& [key, value] : keys.items()) {
    json changed = keys;
    // Doubled (flipped), or halved where doubling breaks a rule (n_kv_heads <= n_heads).
    const double factor = key == "n_kv_heads" ? 0.5 : 2.0;
    if (value.is_boolean()) changed[key] = !value.get<bool>();
    else if (value.is_number_integer()) changed[key] = int(value.get<int>() * factor);
    else changed[key] = value.get<double>() * factor;
    json whole = minimal();
    whole["model"] = changed;
    whole["data"]["seq_len"] = 1;  // valid whatever max_seq_len becomes
    const lh::ModelConfig b = Config::from_json(whole).model;
    const size_t n = lh::architecture_changes(a, b).size() + lh::model_setting_changes(a, b).size();
    INFO(key);
    CHECK(n == 1);
    covered += n;
  }
  CHECK(covered == keys.size());
}
