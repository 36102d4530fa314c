// The `lighthouse` binary end to end: exit codes and messages for bad input, and the
// data -> train -> eval -> export pipeline on a tiny model.
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/wait.h>

#include "support/run_binary.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;

namespace {

using lh::testing::run_lighthouse;

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

const char* kTinyConfig = R"({
  "model": {"dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "ffn_hidden": 48, "max_seq_len": 128},
  "data": {"train": ["data/train_*.bin"], "val": ["data/val_*.bin"], "seq_len": 32, "micro_batch": 2},
  "schedule": {"decay": "constant"},
  "training": {"steps": 4, "grad_accum": 1, "eval_interval": 2, "eval_batches": 1, "device": "cpu"},
  "logging": {"dir": "runs/tiny", "interval": 1}
})";

}  // namespace

TEST_CASE("cli: unknown subcommands and flags are errors", "[cpu][cli]") {
  lh::testing::TempDir dir;
  CHECK(run_lighthouse("", dir.path()).code != 0);
  const auto r = run_lighthouse("train --no-such-flag", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("no-such-flag"));
  CHECK(run_lighthouse("frobnicate", dir.path()).code != 0);
  CHECK(run_lighthouse("train --help", dir.path()).code == 0);
}

TEST_CASE("cli: bad configs and overrides name the culprit", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "bad.json", R"({"model": {"dimm": 64}, "data": {"train": ["x.bin"]}})");
  auto r = run_lighthouse("train --config bad.json", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("bad.json") && Catch::Contains("model.dimm"));

  write(dir.path() / "tiny.json", kTinyConfig);
  r = run_lighthouse("train --config tiny.json --set training.steps=-3", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("training.steps"));

  r = run_lighthouse("train --config tiny.json", dir.path());  // the shards do not exist
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("data/train_*.bin"));
}

TEST_CASE("cli: bench gemm refuses the CPU and bad options", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "tiny.json", kTinyConfig);
  auto r = run_lighthouse("bench --device cpu gemm --config tiny.json", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("bench gemm") && Catch::Contains("--device cuda"));
  r = run_lighthouse("bench gemm --config tiny.json --candidates -2", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("--candidates"));
  r = run_lighthouse("bench gemm --config missing.json", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("missing.json"));
}

TEST_CASE("cli: bench train --trace and train --trace need a CUDA device", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "tiny.json", kTinyConfig);
  const auto r = run_lighthouse("bench --device cpu train --config tiny.json --trace t.json", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("--trace") && Catch::Contains("CUDA device"));
  const auto t = run_lighthouse("train --config tiny.json --set training.device=cpu --trace t.json", dir.path());
  CHECK(t.code != 0);
  CHECK_THAT(t.output, Catch::Contains("--trace") && Catch::Contains("training.device cuda"));
}

TEST_CASE("cli: data, train, resume, eval and export on a tiny model", "[cpu][cli]") {
  lh::testing::TempDir dir;
  write(dir.path() / "tiny.json", kTinyConfig);
  auto r = run_lighthouse("data synthetic --task toy --out data --length 33 --train-samples 64 --val-samples 8", dir.path());
  REQUIRE(r.code == 0);

  r = run_lighthouse("train --config tiny.json --quiet --stop-at 2", dir.path());
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(fs::exists(dir.path() / "runs/tiny/step_00000002/state.json"));
  r = run_lighthouse("train --config tiny.json --quiet", dir.path());
  CHECK(r.code != 0);  // refuses to start over a run directory with checkpoints
  r = run_lighthouse("train --config tiny.json --resume", dir.path());
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("resumed") && Catch::Contains("ETA"));
  CHECK(fs::exists(dir.path() / "runs/tiny/step_00000004/model.safetensors"));
  CHECK(fs::exists(dir.path() / "runs/tiny/metrics.jsonl"));

  r = run_lighthouse("eval --checkpoint runs/tiny/step_00000004 --passkey-lengths 96 --passkey-depths 0.5 "
              "--passkey-samples 1 --out eval.json", dir.path());
  REQUIRE(r.code == 0);
  CHECK_THAT(r.output, Catch::Contains("val_loss") && Catch::Contains("passkey"));
  CHECK(fs::exists(dir.path() / "eval.json"));

  r = run_lighthouse("export --checkpoint runs/tiny/step_00000004 --out hf", dir.path());
  REQUIRE(r.code == 0);
  CHECK(fs::exists(dir.path() / "hf/config.json"));
  CHECK(fs::exists(dir.path() / "hf/model.safetensors"));

  r = run_lighthouse("eval --checkpoint runs/no_such_dir", dir.path());
  CHECK(r.code != 0);
  CHECK_THAT(r.output, Catch::Contains("no_such_dir"));
}
