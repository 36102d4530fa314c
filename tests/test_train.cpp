// The trainer end to end on the CPU backend: learning, bit-exact resume, checkpoint safety,
// schedules.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>

#include "lighthouse/checkpoint.h"
#include "lighthouse/checkpoint_dir.h"
#include "lighthouse/data.h"
#include "lighthouse/schedule.h"
#include "lighthouse/trainer.h"
#include "support/small_run.h"
#include "support/temp_dir.h"
#include "train/resume_changes.h"
#include "train/run_checks.h"

namespace fs = std::filesystem;


TEST_CASE("resume is bit-exact: N steps == N/2 steps + resume + N/2 steps", "[cpu][train]") {
  lh::testing::TempDir straight_dir, split_dir;
  auto be = lh::make_cpu_backend();
  const int N = 10;

  const lh::Config straight = lh::testing::small_run(straight_dir.path(), N);
  lh::train(straight, *be, {false, true});

  // The same config, stopped after N/2 steps (as a preempted job would be), then resumed.
  const lh::Config split = lh::testing::small_run(split_dir.path(), N);
  lh::TrainOptions stop_half{false, true};
  stop_half.stop_at_step = N / 2;
  const auto first = lh::train(split, *be, stop_half);
  REQUIRE(first.steps_done == N / 2);
  const auto second = lh::train(split, *be, {true, true});
  REQUIRE(second.steps_done == N);

  const auto a = lh::testing::losses_in(straight_dir.path() / "run" / "metrics.jsonl");
  const auto b = lh::testing::losses_in(split_dir.path() / "run" / "metrics.jsonl");
  REQUIRE(a.size() == size_t(N));
  REQUIRE(b.size() == size_t(N));
  for (int i = 0; i < N; ++i) {
    INFO("step " << i + 1);
    CHECK(a[i] == b[i]);  // bitwise: the same doubles
  }
  const std::string name = lh::ckpt::checkpoint_name(N);
  CHECK(lh::testing::file_bytes(straight_dir.path() / "run" / name / "model.safetensors") ==
        lh::testing::file_bytes(split_dir.path() / "run" / name / "model.safetensors"));
  CHECK(lh::testing::file_bytes(straight_dir.path() / "run" / name / "optimizer.safetensors") ==
        lh::testing::file_bytes(split_dir.path() / "run" / name / "optimizer.safetensors"));
}

TEST_CASE("training.attention_backward is recorded in config.json and leaves CPU results alone", "[cpu][train]") {
  lh::testing::TempDir default_dir, flash_dir;
  auto be = lh::make_cpu_backend();
  const int N = 3;
  lh::train(lh::testing::small_run(default_dir.path(), N), *be, {false, true});
  lh::Config flash = lh::testing::small_run(flash_dir.path(), N);
  flash.training.attention_backward = "flash";
  lh::train(flash, *be, {false, true});
  // A choice between CUDA kernels: the CPU has one attention backward.
  CHECK(lh::testing::losses_in(flash_dir.path() / "run" / "metrics.jsonl") ==
        lh::testing::losses_in(default_dir.path() / "run" / "metrics.jsonl"));
  std::ifstream in(flash_dir.path() / "run" / "config.json");
  const auto saved = nlohmann::json::parse(in);
  CHECK(saved["training"]["attention_backward"] == "flash");
  CHECK(lh::Config::from_json(saved) == flash);
  // A TrainingConfig built in code skips the parser's check; configure_kernels makes its own.
  lh::TrainingConfig bogus;
  bogus.attention_backward = "fast";
  CHECK_THROWS_WITH(lh::configure_kernels(*be, bogus), Catch::Contains("training.attention_backward"));
}

TEST_CASE("an interrupted checkpoint write leaves the previous checkpoint loadable", "[cpu][train]") {
  lh::testing::TempDir dir;
  auto be = lh::make_cpu_backend();
  const lh::Config cfg = lh::testing::small_run(dir.path(), 10);
  lh::TrainOptions stop{false, true};
  stop.stop_at_step = 5;
  lh::train(cfg, *be, stop);
  const fs::path run = dir.path() / "run";

  // A crash in the middle of writing step 10: the staging directory holds a torn weights file and
  // no state; a crash between mkdir and the state file of the final name is impossible by
  // construction, but an incomplete final directory is ignored as well.
  const fs::path torn = run / ".tmp-step_00000010-99999";
  fs::create_directories(torn);
  std::ofstream(torn / "model.safetensors") << "torn";
  fs::create_directories(run / "step_00000010");
  std::ofstream(run / "step_00000010" / "model.safetensors") << "torn";

  const auto newest = lh::ckpt::newest_checkpoint(run.string());
  REQUIRE(newest.has_value());
  CHECK(fs::path(*newest).filename() == "step_00000005");
  lh::LlamaModel model(cfg.model, *be);
  lh::AdamW opt(cfg.optimizer, model.layout(), *be);
  CHECK(lh::load_checkpoint(*newest, model, &opt).state.step == 5);
  const auto resumed = lh::train(cfg, *be, {true, true});
  CHECK(resumed.steps_done == 10);
}

TEST_CASE("damaged or mismatching checkpoints are refused without touching the model", "[cpu][train]") {
  lh::testing::TempDir dir;
  auto be = lh::make_cpu_backend();
  const lh::Config cfg = lh::testing::small_run(dir.path(), 5);
  lh::train(cfg, *be, {false, true});
  const fs::path ckpt = dir.path() / "run" / lh::ckpt::checkpoint_name(5);

  lh::LlamaModel model(cfg.model, *be);
  model.init_weights(99);
  const std::vector<float> before(model.params().as<float>(), model.params().as<float>() + model.layout().total());
  auto unchanged = [&]() {
    const float* p = model.params().as<float>();
    return std::equal(before.begin(), before.end(), p);
  };

  SECTION("a flipped byte in the weights fails the checksum") {
    {
      std::fstream f(ckpt / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(-3, std::ios::end);
      f.put('\x7f');
    }
    try {
      lh::load_checkpoint_weights(ckpt.string(), model);
      FAIL("damaged checkpoint was accepted");
    } catch (const lh::CheckpointError& e) {
      CHECK_THAT(e.what(), Catch::Contains("checksum") && Catch::Contains("model.safetensors"));
    }
    CHECK(unchanged());
  }
  SECTION("a different model shape is refused") {
    lh::ModelConfig other = cfg.model;
    other.ffn_hidden = 96;
    lh::LlamaModel wrong(other, *be);
    CHECK_THROWS_WITH(lh::load_checkpoint_weights(ckpt.string(), wrong),
                      Catch::Contains("another architecture") && Catch::Contains("model.ffn_hidden 64 -> 96"));
  }
  SECTION("settings that hold no weights may differ (a longer context, another RoPE base)") {
    lh::ModelConfig longer = cfg.model;
    longer.max_seq_len *= 4;
    longer.rope_theta *= 50;
    lh::LlamaModel extended(longer, *be);
    CHECK(lh::load_checkpoint_weights(ckpt.string(), extended).state.step == 5);
  }
  SECTION("state values out of range are refused before anything changes") {
    nlohmann::json state = nlohmann::json::parse(std::ifstream(ckpt / "state.json"));
    std::string needle;
    SECTION("negative optimizer steps") { state["optimizer_steps"] = -7, needle = "optimizer_steps"; }
    SECTION("optimizer steps past int") { state["optimizer_steps"] = (int64_t(1) << 33) + 3, needle = "optimizer_steps"; }
    SECTION("a negative loader epoch") { state["state"]["loader"]["epoch"] = -1, needle = "loader.epoch"; }
    SECTION("a format of the wrong type") { state["format"] = 5, needle = "format key"; }
    SECTION("a version of the wrong type") { state["version"] = "1", needle = "format version"; }
    std::ofstream(ckpt / "state.json") << state.dump(2);
    lh::AdamW opt(cfg.optimizer, model.layout(), *be);
    CHECK_THROWS_WITH(lh::load_checkpoint(ckpt.string(), model, &opt),
                      Catch::Contains("state.json") || Catch::Contains(ckpt.string()));
    CHECK_THROWS_WITH(lh::load_checkpoint(ckpt.string(), model, &opt), Catch::Contains(needle));
    CHECK(unchanged());
  }
  SECTION("a truncated state.json is refused") {
    std::ofstream(ckpt / "state.json") << "{\"format\": \"lighthouse-check";
    CHECK_THROWS_WITH(lh::load_checkpoint_weights(ckpt.string(), model), Catch::Contains("state.json"));
    CHECK(unchanged());
  }
  SECTION("a missing optimizer file is refused") {
    fs::remove(ckpt / "optimizer.safetensors");
    lh::AdamW opt(cfg.optimizer, model.layout(), *be);
    CHECK_THROWS_WITH(lh::load_checkpoint(ckpt.string(), model, &opt), Catch::Contains("optimizer.safetensors"));
    CHECK(unchanged());
  }
}

TEST_CASE("a fresh run refuses a run directory that holds checkpoints", "[cpu][train]") {
  lh::testing::TempDir dir;
  auto be = lh::make_cpu_backend();
  const lh::Config cfg = lh::testing::small_run(dir.path(), 5);
  lh::train(cfg, *be, {false, true});
  CHECK_THROWS_WITH(lh::train(cfg, *be, {false, true}), Catch::Contains("--resume"));

  SECTION("nor one that holds a config.json or metrics.jsonl of its own, which it would replace") {
    lh::Config fresh = cfg;
    fresh.logging.dir = (dir.path() / "project").string();
    fs::create_directories(fresh.logging.dir);
    std::ofstream(dir.path() / "project" / "config.json") << "// my notes\n{}";
    CHECK_THROWS_WITH(lh::train(fresh, *be, {false, true}),
                      Catch::Contains("logging.dir") && Catch::Contains("holds config.json that no run wrote"));
    CHECK_THROWS_WITH(lh::train(fresh, *be, {true, true}), Catch::Contains("that no run wrote"));  // --resume too
    CHECK(lh::testing::file_bytes(dir.path() / "project" / "config.json") == "// my notes\n{}");
    // An earlier run's files (a run that stopped before its first checkpoint): --resume restarts it.
    lh::Config early = cfg;
    early.logging.dir = (dir.path() / "early").string();
    fs::create_directories(early.logging.dir);
    std::ofstream(dir.path() / "early" / "config.json") << early.to_json().dump();
    std::ofstream(dir.path() / "early" / "metrics.jsonl") << R"({"step": 1, "loss": 5.5})" << "\n";
    CHECK_THROWS_WITH(lh::train(early, *be, {false, true}),
                      Catch::Contains("already holds an earlier run's config.json and metrics.jsonl") &&
                          Catch::Contains("--resume"));
    CHECK(lh::train(early, *be, {true, true}).steps_done == 5);
  }
  SECTION("a damaged newest checkpoint is refused, naming the one before it") {
    lh::Config longer = cfg;
    longer.training.steps = 10;  // checkpoints at 5 and 10
    lh::train(longer, *be, {true, true});
    const fs::path newest = fs::path(cfg.logging.dir) / "step_00000010" / "model.safetensors";
    fs::resize_file(newest, fs::file_size(newest) / 2);
    longer.training.steps = 12;
    CHECK_THROWS_WITH(lh::train(longer, *be, {true, true}),
                      Catch::Contains("checksum mismatch") &&
                          Catch::Contains("to resume from the checkpoint before it (" + cfg.logging.dir +
                                          "/step_00000005), move " + cfg.logging.dir + "/step_00000010 out of"));
  }
}

TEST_CASE("a resume drops a metrics record torn by a crash", "[cpu][train]") {
  lh::testing::TempDir dir;
  auto be = lh::make_cpu_backend();
  lh::Config cfg = lh::testing::small_run(dir.path(), 4);
  lh::train(cfg, *be, {false, true});
  const fs::path metrics = dir.path() / "run" / "metrics.jsonl";
  std::ofstream(metrics, std::ios::app) << "{\"step\": 5, \"lo";  // the crash came mid-write
  cfg.training.steps = 6;
  lh::train(cfg, *be, {true, true});
  CHECK(lh::testing::losses_in(metrics).size() == 6);  // every line parses again
}

TEST_CASE("validation on training shards and an unusable run directory are refused before step 1", "[cpu][train]") {
  lh::testing::TempDir dir;
  auto be = lh::make_cpu_backend();
  lh::TrainOptions dry;
  dry.dry_run = true;
  lh::Config cfg = lh::testing::small_run(dir.path(), 4);
  lh::Config whole_dir = cfg;  // the directory form takes the val_* shards into training as well
  whole_dir.data.train = {(dir.path() / "data").string()};
  CHECK_THROWS_WITH(lh::train(whole_dir, *be, dry), Catch::Contains("data.val") && Catch::Contains("val_000000.bin") &&
                                                        Catch::Contains("is a training shard too"));
  whole_dir.training.eval_interval = 0;  // no validation: nothing is scored twice
  CHECK_NOTHROW(lh::train(whole_dir, *be, dry));
  // ... but training on shards named as validation data is said.
  CHECK_THAT(lh::val_named_train_shards({"d/train_000000.bin", "d/val_000000.bin"}),
             Catch::Contains("data.train takes 1 shard(s) named as validation data (d/val_000000.bin)"));
  CHECK(lh::val_named_train_shards({"d/train_000000.bin", "d/interval_1.bin"}).empty());
  // A misspelt shard list names its key.
  lh::Config missing = cfg;
  missing.data.train = {(dir.path() / "nothere" / "train_*.bin").string()};
  CHECK_THROWS_WITH(lh::train(missing, *be, dry),
                    Catch::Contains("data.train") && Catch::Contains("no shard file matches"));

  std::ofstream(dir.path() / "a_file") << "x";
  lh::Config under_file = cfg;
  under_file.logging.dir = (dir.path() / "a_file" / "run").string();
  CHECK_THROWS_WITH(lh::train(under_file, *be, dry),
                    Catch::Contains("logging.dir") && Catch::Contains("a_file is not a directory"));
}

TEST_CASE("phases that would not do what they say are named", "[cpu][train]") {
  lh::testing::TempDir dir;
  lh::Config cfg = lh::testing::small_run(dir.path(), 4);
  CHECK(lh::idle_phase_warnings(cfg).empty());
  const nlohmann::json all_dense = {{"dense_layers", nlohmann::json::array()}};
  cfg.attention.phases = {{4, "dense", nlohmann::json::object()}, {8, "lighthouse", all_dense}};
  for (int l = 0; l < cfg.model.n_layers; ++l) cfg.attention.phases[1].options["dense_layers"].push_back(l);
  const std::vector<std::string> w = lh::idle_phase_warnings(cfg);
  REQUIRE(w.size() == 2);
  CHECK_THAT(w[0], Catch::Contains("attention.phases[1] (lighthouse) starts after training.steps = 4"));
  CHECK_THAT(w[1], Catch::Contains("attention.phases[1].options.dense_layers lists every layer"));
  cfg.training.steps = 6;  // now the second phase runs, though still densely
  CHECK(lh::idle_phase_warnings(cfg).size() == 1);
}

TEST_CASE("a run cut short of its dense tail is refused with a fix that works, and warned on resume", "[cpu][train]") {
  lh::testing::TempDir dir;
  lh::Config cfg = lh::testing::small_run(dir.path(), 30);
  const auto phase = [](int until, const char* kind) { return lh::AttentionPhase{until, kind, nlohmann::json::object()}; };
  cfg.attention.phases = {phase(60, "dense"), phase(120, "dense"), phase(150, "dense")};
  CHECK(lh::missing_dense_tail(cfg).empty());  // ends in a dense phase anyway
  cfg.attention.phases = {phase(60, "lighthouse"), phase(120, "lighthouse"), phase(150, "dense")};
  const std::string problem = lh::missing_dense_tail(cfg);
  CHECK_THAT(problem, Catch::Contains("30 ends before attention.phases[2] (dense) starts at step 121") &&
                          Catch::Contains("--stop-at") && Catch::Contains("without the dense one"));
  // The advice scales every boundary into the first 80% of the run, and the config it gives is valid.
  CHECK_THAT(problem, Catch::Contains("--set attention.phases[0].until_step=12 --set attention.phases[1].until_step=24"));
  lh::Config fixed = cfg;
  fixed.attention.phases[0].until_step = 12, fixed.attention.phases[1].until_step = 24;
  CHECK(lh::missing_dense_tail(fixed).empty());
  cfg.training.steps = 2;  // too short for two phases and a dense tail: no boundaries to suggest
  CHECK_THAT(lh::missing_dense_tail(cfg), !Catch::Contains("--set"));

  lh::Config two = lh::testing::small_run(dir.path(), 4);
  two.attention.phases = {phase(8, "dense"), phase(12, "dense")};
  two.attention.phases[0].attention = "lighthouse";
  two.attention.phases[0].options = {{"levels", 2}, {"pooling", 2}, {"topk", 128}};
  auto be = lh::make_cpu_backend();
  lh::TrainOptions dry;
  dry.dry_run = true;
  CHECK_THROWS_WITH(lh::train(two, *be, dry), Catch::Contains("training.steps") && Catch::Contains("never train dense"));
}

TEST_CASE("one run at a time in a run directory", "[cpu][train]") {
  lh::testing::TempDir dir;
  auto be = lh::make_cpu_backend();
  const lh::Config cfg = lh::testing::small_run(dir.path(), 4);
  {
    const lh::ckpt::RunDirLock other_run((dir.path() / "run").string());  // as another process would
    REQUIRE(other_run.problem().empty());
    CHECK_THROWS_WITH(lh::train(cfg, *be, {false, true}), Catch::Contains("is in use by another run"));
    CHECK_FALSE(fs::exists(dir.path() / "run" / "metrics.jsonl"));
    lh::TrainOptions dry;
    dry.dry_run = true;  // checks only: says what the real run would, and leaves the other run's lock alone
    CHECK_THROWS_WITH(lh::train(cfg, *be, dry), Catch::Contains("is in use by another run"));
  }
  lh::TrainOptions dry;
  dry.dry_run = true;
  CHECK_NOTHROW(lh::train(cfg, *be, dry));  // the dry run's probe did not keep the lock
  CHECK(lh::train(cfg, *be, {false, true}).steps_done == 4);  // free again
}

TEST_CASE("a run whose checkpoints are all damaged is not started over", "[cpu][train]") {
  lh::testing::TempDir dir;
  auto be = lh::make_cpu_backend();
  lh::Config cfg = lh::testing::small_run(dir.path(), 4);
  cfg.training.checkpoint_interval = 2;
  lh::train(cfg, *be, {false, true});
  const fs::path run = dir.path() / "run";
  for (int step : {2, 4}) fs::remove(run / lh::ckpt::checkpoint_name(step) / "state.json");
  const auto metrics_lines = [&] {
    std::ifstream in(run / "metrics.jsonl");
    return std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n');
  };
  const auto before = metrics_lines();
  REQUIRE(before >= 4);
  for (bool resume : {true, false}) {
    INFO("resume " << resume);
    CHECK_THROWS_WITH(lh::train(cfg, *be, {resume, true}),
                      Catch::Contains("without a state.json") && Catch::Contains("step_00000004") &&
                          Catch::Contains("step_00000002"));
  }
  CHECK(metrics_lines() == before);  // the run's history is kept
  CHECK(fs::exists(run / "step_00000004" / "model.safetensors"));
}

TEST_CASE("learning-rate schedules", "[cpu][train]") {
  lh::ScheduleConfig s;
  s.warmup_steps = 10;
  s.min_lr = 0.1;
  const double peak = 1.0;
  const int total = 110;
  SECTION("linear warm-up reaches the peak at the last warm-up step") {
    s.decay = "constant";
    CHECK(lh::learning_rate(s, peak, 0, total) == Approx(0.1));
    CHECK(lh::learning_rate(s, peak, 4, total) == Approx(0.5));
    CHECK(lh::learning_rate(s, peak, 9, total) == Approx(1.0));
    CHECK(lh::learning_rate(s, peak, 100, total) == Approx(1.0));
  }
  SECTION("cosine: peak after warm-up, halfway at the midpoint, min_lr at the end") {
    s.decay = "cosine";
    CHECK(lh::learning_rate(s, peak, 10, total) == Approx(1.0));
    CHECK(lh::learning_rate(s, peak, total - 1, total) == Approx(0.1));
    const double mid = lh::learning_rate(s, peak, 10 + (total - 11) / 2, total);
    CHECK(mid == Approx(0.55).margin(0.01));
  }
  SECTION("linear decays to min_lr") {
    s.decay = "linear";
    CHECK(lh::learning_rate(s, peak, total - 1, total) == Approx(0.1));
    CHECK(lh::learning_rate(s, peak, 60, total) < lh::learning_rate(s, peak, 30, total));
  }
  SECTION("wsd holds the peak, then decays over the final fraction") {
    s.decay = "wsd";
    s.decay_fraction = 0.2;  // the last 22 steps
    CHECK(lh::learning_rate(s, peak, 87, total) == Approx(1.0));
    CHECK(lh::learning_rate(s, peak, 88, total) < 1.0);
    CHECK(lh::learning_rate(s, peak, total - 1, total) == Approx(0.1));
  }
}

TEST_CASE("a resume says what a changed config does to the next steps", "[cpu][train]") {
  lh::testing::TempDir dir;
  const lh::Config then = lh::testing::small_run(dir.path(), 40);
  CHECK(lh::resume_changes(then, then, 20).empty());
  lh::Config longer = then;
  longer.training.steps = 80;  // the cosine now decays over twice the steps: step 21's lr jumps up
  const std::vector<std::string> lr = lh::resume_changes(then, longer, 20);
  REQUIRE(lr.size() == 1);
  CHECK_THAT(lr[0], Catch::Contains("(training.steps 40 -> 80)") && Catch::Contains("step 21 runs at lr"));
  lh::Config warmer = then;
  warmer.schedule.warmup_steps = 30;  // only what changed is named
  const std::vector<std::string> warm = lh::resume_changes(then, warmer, 20);
  REQUIRE(warm.size() == 1);
  CHECK_THAT(warm[0], Catch::Contains("(schedule.warmup_steps 2 -> 30)"));
  const double was = lh::learning_rate(then.schedule, then.optimizer.lr, 20, 40);
  const double is = lh::learning_rate(longer.schedule, longer.optimizer.lr, 20, 80);
  CHECK(is > was);
  char expected[64];
  std::snprintf(expected, sizeof expected, "lr %.4g, where the checkpoint's schedule had %.4g", is, was);
  CHECK_THAT(lr[0], Catch::Contains(expected));
  lh::Config constant = then;
  constant.schedule.decay = "constant";
  constant.schedule.warmup_steps = 0;
  lh::Config constant_longer = constant;
  constant_longer.training.steps = 80;  // nothing to say: the lr is the same
  CHECK(lh::resume_changes(constant, constant_longer, 20).empty());
  lh::Config wider = then;
  wider.data.seq_len = 16;
  const std::vector<std::string> windows = lh::resume_changes(then, wider, 20);
  REQUIRE(windows.size() == 1);
  CHECK_THAT(windows[0], Catch::Contains("data.seq_len 32 -> 16"));
  lh::Config extended = then;  // a longer context with another RoPE base, other data, another seed
  extended.model.max_seq_len *= 2;
  extended.model.rope_theta = 500000.0;
  extended.data.train = {"other_*.bin"};
  extended.training.seed += 1;
  const std::vector<std::string> moved = lh::resume_changes(then, extended, 20);
  REQUIRE(moved.size() == 4);
  CHECK_THAT(moved[0], Catch::Contains("model.max_seq_len"));
  CHECK_THAT(moved[1], Catch::Contains("model.rope_theta 10000 -> 500000"));
  CHECK_THAT(moved[2], Catch::Contains("data.train differs"));
  CHECK_THAT(moved[3], Catch::Contains("training.seed"));
  lh::Config retuned = then;  // settings without a warning of their own are still named
  retuned.optimizer.weight_decay = 0.05;
  retuned.attention.phases = {{40, "dense", nlohmann::json::object()}};
  const std::vector<std::string> other = lh::resume_changes(then, retuned, 20);
  REQUIRE(other.size() == 1);
  CHECK_THAT(other[0], Catch::Contains("other settings differ") && Catch::Contains("optimizer.weight_decay 0.1 -> 0.05") &&
                           Catch::Contains("attention.phases[0].until_step (unset) -> 40") &&
                           !Catch::Contains("attention.phases [] ->"));
  CHECK(lh::resume_changes(then, longer, 80).empty());  // nothing left to train: no lr to speak of

  // A phase boundary moved past the checkpoint: the element and key are named, and going back from
  // the dense tail to Lighthouse attention is said on its own.
  lh::Config phased = then;
  phased.attention.phases = {{10, "lighthouse", nlohmann::json::object()}, {40, "dense", nlohmann::json::object()}};
  lh::Config moved_boundary = phased;
  moved_boundary.attention.phases[0].until_step = 30;
  const std::vector<std::string> back = lh::resume_changes(phased, moved_boundary, 20);
  REQUIRE(back.size() == 2);
  CHECK_THAT(back[0], Catch::Contains("was in its dense phase at step 20") &&
                          Catch::Contains("step 21 runs lighthouse attention again"));
  CHECK_THAT(back[1], Catch::Contains("attention.phases[0].until_step 10 -> 30"));
  // A checkpoint at the end of a leading dense phase, config unchanged: nothing goes back.
  lh::Config dense_first = then;
  dense_first.attention.phases = {{20, "dense", nlohmann::json::object()}, {40, "lighthouse", nlohmann::json::object()}};
  CHECK(lh::resume_changes(dense_first, dense_first, 20).empty());
}

TEST_CASE("validation off leaves the validation shards unread, and a call that trains nothing keeps config.json",
          "[cpu][train]") {
  lh::testing::TempDir dir;
  auto be = lh::make_cpu_backend();
  lh::Config cfg = lh::testing::small_run(dir.path(), 3);
  cfg.data.micro_batch = 32;  // more than the 16 validation windows: only validation would refuse
  cfg.training.grad_accum = 1;
  CHECK_THROWS_WITH(lh::train(cfg, *be, {false, true}), Catch::Contains("val_"));
  cfg.training.eval_interval = 0;
  CHECK(lh::train(cfg, *be, {false, true}).steps_done == 3);
  const fs::path config_json = dir.path() / "run" / "config.json";
  std::stringstream before;
  before << std::ifstream(config_json).rdbuf();
  lh::Config other = cfg;
  other.optimizer.lr = 0.5;  // never runs: the checkpoint is already at training.steps
  const lh::TrainSummary s = lh::train(other, *be, {true, true});
  CHECK(s.steps_run == 0);
  CHECK_FALSE(s.last_checkpoint.empty());  // the resumed-from checkpoint
  std::stringstream after;
  after << std::ifstream(config_json).rdbuf();
  CHECK(after.str() == before.str());
}

TEST_CASE("the quickstart config learns: loss falls well below the data's unigram entropy", "[cpu][train][slow]") {
  lh::testing::TempDir dir;
  lh::Config cfg = lh::Config::load_file(std::string(LH_SOURCE_DIR) + "/configs/quickstart.json");
  lh::data::SyntheticOptions o;
  o.task = lh::data::SyntheticTask::Toy;
  o.length = cfg.data.seq_len + 1;
  o.train_samples = 4000;
  o.val_samples = 200;
  o.seed = 20260520;
  const auto stats = lh::data::generate_synthetic(o, (dir.path() / "data").string());
  cfg.data.train = {(dir.path() / "data" / "train_*.bin").string()};
  cfg.data.val = {(dir.path() / "data" / "val_*.bin").string()};
  cfg.logging.dir = (dir.path() / "run").string();
  cfg.training.device = "cpu";

  std::vector<int32_t> all;
  for (const auto& shard : stats.train_shards) {
    const auto t = lh::data::read_shard(shard);
    all.insert(all.end(), t.begin(), t.end());
  }
  const double unigram_nats = lh::data::unigram_entropy_bits(all) * std::log(2.0);
  auto be = lh::make_cpu_backend();
  const auto s = lh::train(cfg, *be, {false, true});
  INFO("unigram entropy " << unigram_nats << " nats, final val loss " << s.last_val_loss);
  REQUIRE(s.last_val_loss > 0);
  CHECK(s.last_val_loss < 0.6 * unigram_nats);
}
