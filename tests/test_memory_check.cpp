// The trainer lays out every attention phase a run has left before its first step: a phase that
// does not fit the device fails then, naming itself, with nothing trained or written; one that fits
// reports what it holds; a dry run checks and writes nothing.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>

#include "lighthouse/trainer.h"
#include "support/gpu.h"
#include "support/small_run.h"
#include "support/temp_dir.h"
#include "train/memory_check.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
// Dense until `boundary`, Lighthouse after it: the later phase holds more (its saved selections
// and gathered sub-sequences), so a device can fit the first and not the second. No
// recomputation, so that what a phase needs does not adapt to the memory left.
lh::Config dense_then_lighthouse(const fs::path& dir, int steps, int boundary) {
  json j = lh::testing::phased_run(dir, steps, boundary).to_json();
  const json lighthouse = j["attention"]["phases"][0];
  j["attention"]["phases"] = {{{"until_step", boundary}, {"attention", "dense"}},
                              {{"until_step", steps}, {"attention", "lighthouse"}, {"options", lighthouse["options"]}}};
  j["training"]["recompute"] = "none";
  return lh::Config::from_json(j);
}

std::string out_of_memory_message(const lh::Config& cfg, lh::Backend& be) {
  try {
    lh::TrainOptions opt;
    opt.quiet = true;
    lh::train(cfg, be, opt);
  } catch (const lh::OutOfMemory& e) {
    return e.what();
  }
  return "trained";
}
}  // namespace

TEST_CASE("every attention phase is laid out before the first step, and one that does not fit fails then",
          "[cpu][train]") {
  lh::testing::TempDir dir;
  const int steps = 4, boundary = 2;
  const lh::Config cfg = dense_then_lighthouse(dir.path(), steps, boundary);
  const fs::path run = cfg.logging.dir;

  // A dry run lays out both phases, reports them and writes nothing.
  auto unlimited = lh::make_cpu_backend();
  lh::TrainOptions dry;
  dry.quiet = true, dry.dry_run = true;
  const lh::TrainSummary plan = lh::train(cfg, *unlimited, dry);
  CHECK(plan.steps_run == 0);
  CHECK_FALSE(fs::exists(run));
  REQUIRE(plan.memory.size() == 2);
  const lh::PhaseMemory &dense = plan.memory[0], &lighthouse = plan.memory[1];
  CHECK(dense.index == 0);
  CHECK(dense.attention == "dense");
  CHECK(dense.first_step == 1);
  CHECK(dense.last_step == boundary);
  CHECK(lighthouse.index == 1);
  CHECK(lighthouse.attention == "lighthouse");
  CHECK(lighthouse.first_step == boundary + 1);
  CHECK(lighthouse.last_step == steps);
  CHECK(dense.recompute == "none");
  CHECK(dense.activation_bytes > 0);
  CHECK(dense.activation_bytes == lighthouse.activation_bytes);  // the same arena in both phases
  CHECK(lighthouse.attention_bytes > dense.attention_bytes);
  CHECK(lighthouse.held_bytes > dense.held_bytes);
  CHECK(dense.held_bytes > dense.activation_bytes + dense.attention_bytes);  // weights, gradients, moments too
  CHECK(dense.spare_bytes == SIZE_MAX);  // the CPU sees no limit
  CHECK_THAT(lh::describe(lighthouse, 2), Catch::Contains("phase 2 of 2 (lighthouse, steps 3-4): recompute none"));
  CHECK(unlimited->bytes_in_use() == 0);  // the check frees what it laid out

  SECTION("a device that holds the first phase but not the second: an error naming it before step 1") {
    auto small = lh::make_cpu_backend(lh::DType::F32, (dense.held_bytes + lighthouse.held_bytes) / 2);
    const std::string message = out_of_memory_message(cfg, *small);
    INFO(message);
    CHECK_THAT(message, Catch::Contains("attention phase 2 of 2 (attention.phases[1]: lighthouse, steps 3-4) does not fit"));
    CHECK_THAT(message, Catch::Contains("data.micro_batch x data.seq_len"));
    CHECK_FALSE(fs::exists(run / "metrics.jsonl"));  // nothing trained
    CHECK_FALSE(fs::exists(run / "config.json"));
  }
  SECTION("a resumed run checks only the phases it has left") {
    auto be = lh::make_cpu_backend();
    lh::TrainOptions stop;
    stop.quiet = true, stop.stop_at_step = boundary + 1;  // into the Lighthouse phase
    REQUIRE(lh::train(cfg, *be, stop).steps_done == boundary + 1);
    // Now the other way round: after step 3 only Lighthouse is left, and it fits this device.
    auto fits = lh::make_cpu_backend(lh::DType::F32, lighthouse.held_bytes + (lighthouse.held_bytes >> 3));
    lh::TrainOptions resume;
    resume.quiet = true, resume.resume = true;
    const lh::TrainSummary s = lh::train(cfg, *fits, resume);
    CHECK(s.steps_done == steps);
    REQUIRE(s.memory.size() == 1);
    CHECK(s.memory[0].attention == "lighthouse");
    CHECK(s.memory[0].first_step == boundary + 2);
    CHECK(s.memory[0].held_bytes == lighthouse.held_bytes);
    CHECK(s.memory[0].spare_bytes == (lighthouse.held_bytes >> 3));
  }
  SECTION("a run with one attention for all its steps: one entry, the whole run") {
    lh::Config single = cfg;
    single.attention.phases.clear();
    const lh::TrainSummary s = lh::train(single, *unlimited, dry);
    REQUIRE(s.memory.size() == 1);
    CHECK(s.memory[0].attention == "dense");
    CHECK(s.memory[0].first_step == 1);
    CHECK(s.memory[0].last_step == steps);
    CHECK(s.memory[0].held_bytes == dense.held_bytes);
  }
}

TEST_CASE("on the GPU the memory check takes and frees each phase's cuDNN workspace, then the run trains",
          "[gpu][train]") {
  LH_SKIP_WITHOUT_GPU();
  lh::testing::TempDir dir;
  const int steps = 4, boundary = 2;
  const lh::Config cfg = lh::testing::phased_run(dir.path(), steps, boundary, "cuda");  // Lighthouse, then dense
  auto gpu = lh::make_cuda_backend();
  const size_t held_before = gpu->bytes_in_use();
  lh::TrainOptions opt;
  opt.quiet = true, opt.dry_run = true;
  const lh::TrainSummary plan = lh::train(cfg, *gpu, opt);
  REQUIRE(plan.memory.size() == 2);
  for (const lh::PhaseMemory& m : plan.memory) {
    INFO(lh::describe(m, 2));
    CHECK(m.workspace_bytes > 0);  // the deterministic backward's scratch at least
    CHECK(m.spare_bytes > 0);
    CHECK(m.spare_bytes < SIZE_MAX);
    CHECK(m.held_bytes > m.activation_bytes + m.attention_bytes + m.workspace_bytes);
  }
  CHECK(plan.memory[0].attention_bytes > plan.memory[1].attention_bytes);  // Lighthouse keeps its selections
  CHECK(gpu->attention_workspace_bytes() == 0);  // released: the first phase must not start with the last one's
  CHECK(gpu->bytes_in_use() == held_before);

  opt.dry_run = false;
  const lh::TrainSummary run = lh::train(cfg, *gpu, opt);
  CHECK(run.steps_done == steps);
  CHECK(std::isfinite(run.last_loss));
  CHECK(run.memory.size() == 2);
}
