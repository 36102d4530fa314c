// Atomic checkpoint directory tests: staging/commit, abandonment, listing that ignores partial
// state, pruning, and replacing an existing step.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "lighthouse/checkpoint_dir.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using namespace lh::ckpt;
using Catch::Contains;

namespace {

void put(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

std::string get(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A complete checkpoint for `step` with a marker payload, written the way the trainer would.
void save(const fs::path& run, int step, const std::string& payload) {
  StagedDir s((run / checkpoint_name(step)).string());
  put(fs::path(s.path()) / "model.bin", payload);
  put(fs::path(s.path()) / "state.json", "{\"step\":" + std::to_string(step) + "}");
  s.commit();
}

size_t count_tmp(const fs::path& run) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) ++n;
  return n;
}

}  // namespace

TEST_CASE("checkpoint names are step_%08d and parse back exactly", "[checkpoint]") {
  CHECK(checkpoint_name(100) == "step_00000100");
  CHECK(checkpoint_name(123456789) == "step_123456789");
  CHECK(parse_checkpoint_name("step_00000100") == 100);
  CHECK_FALSE(parse_checkpoint_name("step_100"));
  CHECK_FALSE(parse_checkpoint_name("step_00000100.old"));
  CHECK_FALSE(parse_checkpoint_name(".tmp-step_00000100-1"));
  CHECK_FALSE(parse_checkpoint_name("step_-0000100"));
  CHECK_THROWS_AS(checkpoint_name(-1), std::invalid_argument);
}

TEST_CASE("StagedDir commit makes the directory appear with its files", "[checkpoint]") {
  lh::testing::TempDir tmp("lh-ckpt");
  const fs::path run = tmp.path() / "run";  // does not exist yet: StagedDir creates it
  CHECK(list_checkpoints(run.string()).empty());
  CHECK_FALSE(newest_checkpoint(run.string()));

  StagedDir s((run / checkpoint_name(100)).string());
  const std::string staging = s.path();
  CHECK(fs::path(staging).filename().string().rfind(".tmp-step_00000100-", 0) == 0);
  put(fs::path(staging) / "state.json", "{}");
  fs::create_directories(fs::path(staging) / "shards");
  put(fs::path(staging) / "shards" / "rank0.bin", "abc");
  CHECK(list_checkpoints(run.string()).empty());  // not visible before commit
  s.commit();

  CHECK(s.committed());
  CHECK(s.path() == (run / "step_00000100").string());
  CHECK_FALSE(fs::exists(staging));
  CHECK(get(run / "step_00000100" / "shards" / "rank0.bin") == "abc");
  CHECK(newest_checkpoint(run.string()) == (run / "step_00000100").string());
  CHECK_THROWS_AS(s.commit(), std::logic_error);
}

TEST_CASE("an abandoned StagedDir leaves nothing behind", "[checkpoint]") {
  lh::testing::TempDir tmp("lh-ckpt");
  const fs::path run = tmp.path();
  save(run, 100, "old");
  try {
    StagedDir s((run / checkpoint_name(200)).string());
    put(fs::path(s.path()) / "state.json", "{}");
    throw std::runtime_error("disk full while saving");  // save fails before commit
  } catch (const std::runtime_error&) {
  }
  CHECK_FALSE(fs::exists(run / "step_00000200"));
  CHECK(count_tmp(run) == 0);
  const auto all = list_checkpoints(run.string());
  REQUIRE(all.size() == 1);
  CHECK(all[0].first == 100);
}

TEST_CASE("listing ignores stray temporaries and incomplete checkpoints", "[checkpoint]") {
  lh::testing::TempDir tmp("lh-ckpt");
  const fs::path run = tmp.path();
  save(run, 100, "a");
  fs::create_directories(run / ".tmp-step_00000200-1234");
  put(run / ".tmp-step_00000200-1234" / "state.json", "{}");  // complete-looking, but staging
  fs::create_directories(run / "step_00000300");               // no state.json: crashed copy
  put(run / "step_00000300" / "model.bin", "x");
  fs::create_directories(run / "step_400");                    // wrong name format
  put(run / "step_400" / "state.json", "{}");
  put(run / "step_00000500", "a file, not a directory");
  CHECK(newest_checkpoint(run.string()) == (run / "step_00000100").string());
  CHECK(list_checkpoints(run.string()).size() == 1);
  // The crashed copy is the one incomplete checkpoint (a resume warns about it).
  const auto incomplete = lh::ckpt::incomplete_checkpoints(run.string());
  REQUIRE(incomplete.size() == 1);
  CHECK(incomplete[0].first == 300);
  CHECK(incomplete[0].second == (run / "step_00000300").string());
}

TEST_CASE("prune keeps the newest k and removes stale temporaries only", "[checkpoint]") {
  lh::testing::TempDir tmp("lh-ckpt");
  const fs::path run = tmp.path();
  for (int step : {50, 10, 40, 20, 30}) save(run, step, std::to_string(step));
  fs::create_directories(run / "step_00000060");  // incomplete: never touched by prune
  // Owner pid above any pid_max: certainly dead, so this is a crashed writer's leftover.
  fs::create_directories(run / ".tmp-step_00000070-999999999");
  // The user's own .tmp-* entries, without a pid or with a dead one, are not the run's to delete.
  fs::create_directories(run / ".tmp-cache");
  std::ofstream(run / ".tmp-notes.txt-999999999-0") << "precious";
  StagedDir in_progress((run / checkpoint_name(80)).string());  // ours and live: must survive

  prune_checkpoints(run.string(), 0);  // 0 keeps every checkpoint
  CHECK(list_checkpoints(run.string()).size() == 5);
  CHECK_FALSE(fs::exists(run / ".tmp-step_00000070-999999999"));

  prune_checkpoints(run.string(), 2);
  const auto all = list_checkpoints(run.string());
  REQUIRE(all.size() == 2);
  CHECK(all[0].first == 40);
  CHECK(all[1].first == 50);
  CHECK(get(run / "step_00000050" / "model.bin") == "50");
  CHECK(fs::exists(run / "step_00000060"));
  CHECK(fs::exists(in_progress.path()));
  CHECK(fs::exists(run / ".tmp-cache"));
  CHECK(fs::exists(run / ".tmp-notes.txt-999999999-0"));
  CHECK(count_tmp(run) == 3);  // the live staging dir and the user's two
  CHECK_THROWS_AS(prune_checkpoints(run.string(), -1), std::invalid_argument);
}

TEST_CASE("re-committing an existing step replaces it completely", "[checkpoint]") {
  lh::testing::TempDir tmp("lh-ckpt");
  const fs::path run = tmp.path();
  save(run, 100, "old");
  put(run / "step_00000100" / "old_only.bin", "stale");
  save(run, 100, "new");
  CHECK(get(run / "step_00000100" / "model.bin") == "new");
  CHECK_FALSE(fs::exists(run / "step_00000100" / "old_only.bin"));
  CHECK(count_tmp(run) == 0);
  CHECK(list_checkpoints(run.string()).size() == 1);
}

TEST_CASE("write_file_atomic writes and overwrites without leftovers", "[checkpoint]") {
  lh::testing::TempDir tmp("lh-ckpt");
  const fs::path p = tmp.path() / "sub" / "metrics.json";
  write_file_atomic(p.string(), "{\"a\":1}");
  CHECK(get(p) == "{\"a\":1}");
  write_file_atomic(p.string(), "{}");
  CHECK(get(p) == "{}");
  CHECK(count_tmp(p.parent_path()) == 0);
  REQUIRE_THROWS_WITH(fsync_path((tmp.path() / "missing").string()), Contains("missing"));
}
