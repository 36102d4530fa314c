// The data-parallel trainer (ZeRO-1) on the CPU backend, with ranks as threads (a thread
// communicator stands in for NCCL): several ranks follow the single-process run with the same
// global batch, repeat bit for bit, resume bit-exactly, and resume with another world size; the
// gradient reduction runs bucket by bucket during backward, as on GPUs.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "lighthouse/model.h"
#include "lighthouse/trainer.h"
#include "support/small_run.h"
#include "support/temp_dir.h"
#include "support/thread_communicator.h"

namespace {

// Trains `cfg` with `world` ranks (threads), each with its own CPU backend (rank r limited to
// memory_limits[r] bytes where given); returns rank 0's summary. With `errors`, each rank's
// exception message lands there ("" if none) instead of being rethrown.
lh::TrainSummary train_ranks(const lh::Config& cfg, int world, lh::TrainOptions opt,
                             const std::vector<size_t>& memory_limits = {}, std::vector<std::string>* errors = nullptr) {
  opt.quiet = true;
  auto group = std::make_shared<lh::testing::ThreadGroup>(world);
  std::vector<lh::TrainSummary> out(world);
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> failures(world);
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        auto be = lh::make_cpu_backend(lh::DType::F32, size_t(r) < memory_limits.size() ? memory_limits[r] : SIZE_MAX);
        lh::testing::ThreadCommunicator comm(group, r);
        out[r] = lh::train(cfg, *be, opt, &comm);
      } catch (...) {
        failures[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    if (!failures[r]) {
      if (errors) errors->push_back("");
      continue;
    }
    if (!errors) std::rethrow_exception(failures[r]);
    try {
      std::rethrow_exception(failures[r]);
    } catch (const std::exception& e) {
      errors->push_back(e.what());
    }
  }
  return out[0];
}

lh::Config dp_run(const std::filesystem::path& dir, int steps) {
  lh::Config c = lh::testing::small_run(dir, steps);
  c.training.grad_accum = 0;
  c.training.global_batch = 8;  // 4 sequences per micro-batch: 2 micro-steps on 1 rank, 1 on 2 ranks
  // About 10 KB per bucket: the small model's gradients span many buckets, several of them cut by
  // the shard boundary, so reduction during backward is exercised.
  c.training.grad_bucket_mb = 0.01;
  return c;
}

}  // namespace

TEST_CASE("data parallel on threads: 2 ranks follow 1 rank and resume exactly", "[cpu][dist][train]") {
  lh::testing::TempDir one, two, again, one_bucket, split, switched;
  const int N = 10;
  train_ranks(dp_run(one.path(), N), 1, {});
  train_ranks(dp_run(two.path(), N), 2, {});
  train_ranks(dp_run(again.path(), N), 2, {});
  lh::Config whole = dp_run(one_bucket.path(), N);
  whole.training.grad_bucket_mb = 1024;  // everything in one bucket, reduced after backward
  train_ranks(whole, 2, {});
  lh::TrainOptions stop;
  stop.stop_at_step = N / 2;
  const lh::Config s = dp_run(split.path(), N);
  train_ranks(s, 2, stop);
  lh::TrainOptions resume;
  resume.resume = true;
  train_ranks(s, 2, resume);

  const auto l1 = lh::testing::losses_in(one.path() / "run/metrics.jsonl");
  const auto l2 = lh::testing::losses_in(two.path() / "run/metrics.jsonl");
  REQUIRE(l1.size() == size_t(N));
  REQUIRE(l2.size() == size_t(N));
  for (int i = 0; i < N; ++i) {
    INFO("step " << i + 1 << ": 1 rank " << l1[i] << ", 2 ranks " << l2[i]);
    // The same global batch; only the order of the gradient sums differs (fp32 rounding).
    CHECK(std::abs(l1[i] - l2[i]) < 1e-4 * l1[i]);
  }
  // AdamW (and clipping) would hide a gradient off by a constant factor (a mean over ranks or
  // micro-batches taken twice, or not at all) from the losses; the global norm shows it.
  const auto g1 = lh::testing::values_in(one.path() / "run/metrics.jsonl", "grad_norm");
  const auto g2 = lh::testing::values_in(two.path() / "run/metrics.jsonl", "grad_norm");
  REQUIRE(g1.size() == size_t(N));
  REQUIRE(g2.size() == size_t(N));
  for (int i = 0; i < N; ++i) {
    INFO("step " << i + 1 << ": grad_norm 1 rank " << g1[i] << ", 2 ranks " << g2[i]);
    CHECK(g1[i] > 0);
    CHECK(std::abs(g1[i] - g2[i]) < 1e-3 * g1[i]);
  }
  CHECK(lh::testing::losses_in(again.path() / "run/metrics.jsonl") == l2);
  // Bucketing changes which rank owns what, hence the order of the global norm's partial sums,
  // not the reduced gradients (the thread communicator sums in rank order either way).
  const auto lb = lh::testing::losses_in(one_bucket.path() / "run/metrics.jsonl");
  REQUIRE(lb.size() == size_t(N));
  for (int i = 0; i < N; ++i) CHECK(std::abs(lb[i] - l2[i]) < 1e-5 * l2[i]);
  CHECK(lh::testing::losses_in(split.path() / "run/metrics.jsonl") == l2);
  const std::string last = "run/step_00000010/model.safetensors";
  CHECK(lh::testing::file_bytes(two.path() / last) == lh::testing::file_bytes(split.path() / last));
  CHECK(lh::testing::file_bytes(two.path() / "run/step_00000010/optimizer.safetensors") ==
        lh::testing::file_bytes(split.path() / "run/step_00000010/optimizer.safetensors"));

  SECTION("a checkpoint of 2 ranks resumes on 1 rank (the optimizer state is resharded)") {
    const lh::Config c = dp_run(switched.path(), N);
    train_ranks(c, 2, stop);
    const auto summary = train_ranks(c, 1, resume);
    CHECK(summary.steps_done == N);
    const auto l = lh::testing::losses_in(switched.path() / "run/metrics.jsonl");
    REQUIRE(l.size() == size_t(N));
    for (int i = 0; i < N; ++i) CHECK(std::abs(l[i] - l2[i]) < 1e-4 * l2[i]);
    const auto g = lh::testing::values_in(switched.path() / "run/metrics.jsonl", "grad_norm");
    REQUIRE(g.size() == size_t(N));
    for (int i = 0; i < N; ++i) CHECK(std::abs(g[i] - g2[i]) < 1e-3 * g2[i]);
  }
}

TEST_CASE("data parallel on threads: a rank whose device cannot hold the run stops every rank before step 1",
          "[cpu][dist][train]") {
  lh::testing::TempDir dir;
  lh::Config cfg = dp_run(dir.path(), 4);
  cfg.training.recompute = lh::Recompute::kNone;  // what the run needs does not adapt to the memory left
  lh::TrainOptions dry;
  dry.dry_run = true;
  const lh::TrainSummary plan = train_ranks(cfg, 2, dry);
  REQUIRE(plan.memory.size() == 1);
  // Rank 1 is one byte short. Without agreement, rank 0 would wait for it in its first collective.
  std::vector<std::string> errors;
  train_ranks(cfg, 2, {}, {SIZE_MAX, plan.memory[0].held_bytes - 1}, &errors);
  REQUIRE(errors.size() == 2);
  CHECK_THAT(errors[0], Catch::Contains("another rank failed before the first step"));
  CHECK_THAT(errors[1], Catch::Contains("the run's attention (dense, steps 1-4) does not fit"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "run" / "metrics.jsonl"));
}

TEST_CASE("data parallel on threads: a rank that fails earlier in its set-up stops every rank too",
          "[cpu][dist][train]") {
  lh::testing::TempDir dir;
  const lh::Config cfg = dp_run(dir.path(), 4);
  // Rank 1 can hold its gradient shard (the data-parallel state, allocated first) but not the
  // model's parameters: its set-up fails long before the memory check, while rank 0's succeeds.
  const size_t params = lh::ParamLayout(cfg.model).total() * sizeof(float);
  const size_t rank1_limit = params / 2 + (64 << 10);
  REQUIRE(rank1_limit < params);
  std::vector<std::string> errors;
  const auto t0 = std::chrono::steady_clock::now();
  train_ranks(cfg, 2, {}, {SIZE_MAX, rank1_limit}, &errors);
  REQUIRE(errors.size() == 2);
  CHECK_THAT(errors[0], Catch::Contains("another rank failed before the first step"));
  CHECK_THAT(errors[1], Catch::Contains("out of memory"));
  // Agreement, not the thread communicator's timeout, ended rank 0's wait.
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "run" / "metrics.jsonl"));
}
