// Data-parallel foundations that need no network and no GPU: launch environment parsing
// (torchrun, Slurm, errors) and ZeRO-1 shard arithmetic. Buckets and the world-1 communicator are
// in test_dist_buckets.cpp, the rendezvous and the launcher in test_dist_rendezvous.cpp.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "lighthouse/dist.h"

namespace {

// Clears every variable detect_dist_env() reads, restores them afterwards, so tests neither see
// the CI job's own Slurm variables nor leak theirs into later tests.
class ScopedEnv {
 public:
  ScopedEnv() {
    for (const char* n : kNames) {
      if (const char* v = std::getenv(n)) saved_[n] = v;
      ::unsetenv(n);
    }
  }
  ~ScopedEnv() {
    for (const char* n : kNames) ::unsetenv(n);
    for (const auto& [n, v] : saved_) ::setenv(n.c_str(), v.c_str(), 1);
  }
  ScopedEnv& set(const char* name, const std::string& value) {
    ::setenv(name, value.c_str(), 1);
    return *this;
  }

 private:
  static constexpr const char* kNames[] = {
      "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LH_DIST_ENV",
      "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NODEID",
      "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE", "SLURM_STEP_TASKS_PER_NODE", "SLURM_NNODES",
      "SLURM_LAUNCH_NODE_IPADDR", "SLURM_STEP_NODELIST", "SLURM_NODELIST", "SLURM_JOB_NODELIST", "SLURM_JOB_ID",
      "TORCHELASTIC_USE_AGENT_STORE", "LH_RENDEZVOUS_PORT", "LH_DIST_TIMEOUT_S"};
  std::map<std::string, std::string> saved_;
};

void expect_env_error(const std::string& needle) {
  try {
    const lh::DistEnv e = lh::detect_dist_env();
    FAIL("accepted (" << e.describe() << "); expected an error mentioning " << needle);
  } catch (const lh::DistError& e) {
    INFO("message: " << e.what());
    CHECK_THAT(e.what(), Catch::Matchers::Contains(needle));
  }
}

}  // namespace

TEST_CASE("dist env: no launcher variables means one process", "[cpu][dist]") {
  ScopedEnv env;
  const lh::DistEnv e = lh::detect_dist_env();
  CHECK(e.rank == 0);
  CHECK(e.world_size == 1);
  CHECK(e.local_rank == 0);
  CHECK(e.local_world_size == 1);
  CHECK(e.source == "single");
  CHECK_FALSE(e.distributed());
}

TEST_CASE("dist env: torchrun variables", "[cpu][dist]") {
  ScopedEnv env;
  env.set("RANK", "5").set("WORLD_SIZE", "8").set("LOCAL_RANK", "1").set("LOCAL_WORLD_SIZE", "4");
  env.set("MASTER_ADDR", "node01").set("MASTER_PORT", "29500");
  // Slurm variables are present under torchrun-inside-Slurm; torchrun's must win.
  env.set("SLURM_PROCID", "0").set("SLURM_NTASKS", "2");
  lh::DistEnv e = lh::detect_dist_env();
  CHECK(e.source == "torchrun");
  CHECK(e.rank == 5);
  CHECK(e.world_size == 8);
  CHECK(e.local_rank == 1);
  CHECK(e.local_world_size == 4);
  CHECK(e.master_addr == "node01");
  CHECK(e.master_port == 29500);
  CHECK_THAT(e.describe(), Catch::Matchers::Contains("rank 5/8"));

  SECTION("a hand-written single-node launch may omit the local variables") {
    ::unsetenv("LOCAL_RANK");
    ::unsetenv("LOCAL_WORLD_SIZE");
    e = lh::detect_dist_env();
    CHECK(e.local_rank == 5);
    CHECK(e.local_world_size == 8);
  }
  SECTION("under torchrun's agent store the rendezvous takes the next port, which the log says") {
    env.set("TORCHELASTIC_USE_AGENT_STORE", "True");
    e = lh::detect_dist_env();
    CHECK(e.master_port == 29501);
    CHECK_THAT(e.describe(), Catch::Matchers::Contains("node01:29501 (MASTER_PORT + 1: torchrun's agent holds MASTER_PORT)"));
    env.set("TORCHELASTIC_USE_AGENT_STORE", "False");  // workers serve the store themselves: MASTER_PORT is free
    CHECK(lh::detect_dist_env().master_port == 29500);
    env.set("MASTER_PORT", "65535").set("TORCHELASTIC_USE_AGENT_STORE", "True");
    expect_env_error("the rendezvous port (MASTER_PORT + 1: torchrun's agent holds MASTER_PORT)=65536 is not a TCP port");
  }
  SECTION("LH_RENDEZVOUS_PORT sets the port under any launcher") {
    env.set("TORCHELASTIC_USE_AGENT_STORE", "True").set("LH_RENDEZVOUS_PORT", "31000");
    CHECK(lh::detect_dist_env().master_port == 31000);
    ::unsetenv("RANK");
    ::unsetenv("WORLD_SIZE");
    env.set("SLURM_PROCID", "1").set("SLURM_NTASKS", "2").set("SLURM_JOB_ID", "7");
    CHECK(lh::detect_dist_env().master_port == 31000);
    env.set("LH_RENDEZVOUS_PORT", "0");
    expect_env_error("the rendezvous port (LH_RENDEZVOUS_PORT)=0 is not a TCP port");
  }
  SECTION("world size 1 needs no master") {
    env.set("RANK", "0").set("WORLD_SIZE", "1").set("LOCAL_RANK", "0").set("LOCAL_WORLD_SIZE", "1");
    ::unsetenv("MASTER_ADDR");
    CHECK_FALSE(lh::detect_dist_env().distributed());
  }
}

TEST_CASE("dist env: malformed torchrun variables are named", "[cpu][dist]") {
  ScopedEnv env;
  env.set("RANK", "1").set("WORLD_SIZE", "4").set("MASTER_ADDR", "127.0.0.1").set("MASTER_PORT", "29500");
  SECTION("non-integer") {
    env.set("RANK", "one");
    expect_env_error("RANK='one' is not an integer");
  }
  SECTION("trailing garbage") {
    env.set("WORLD_SIZE", "4x");
    expect_env_error("WORLD_SIZE='4x'");
  }
  SECTION("rank >= world size") {
    env.set("RANK", "4");
    expect_env_error("RANK=4 is outside [0, WORLD_SIZE=4)");
  }
  SECTION("world size 0") {
    env.set("WORLD_SIZE", "0").set("RANK", "0");
    expect_env_error("WORLD_SIZE=0");
  }
  SECTION("RANK without WORLD_SIZE") {
    ::unsetenv("WORLD_SIZE");
    expect_env_error("WORLD_SIZE is not set");
  }
  SECTION("missing MASTER_ADDR") {
    ::unsetenv("MASTER_ADDR");
    expect_env_error("MASTER_ADDR is not set");
  }
  SECTION("an out-of-range rank is reported before a missing MASTER_ADDR") {
    env.set("RANK", "9");
    ::unsetenv("MASTER_ADDR");
    expect_env_error("RANK=9 is outside [0, WORLD_SIZE=4)");
  }
  SECTION("missing MASTER_PORT") {
    ::unsetenv("MASTER_PORT");
    expect_env_error("MASTER_PORT is not set");
  }
  SECTION("port out of range") {
    env.set("MASTER_PORT", "70000");
    expect_env_error("MASTER_PORT=70000");
  }
  SECTION("local rank outside the node") {
    env.set("LOCAL_RANK", "2").set("LOCAL_WORLD_SIZE", "2");
    expect_env_error("LOCAL_RANK=2");
  }
  SECTION("unknown LH_DIST_ENV") {
    env.set("LH_DIST_ENV", "mpi");
    expect_env_error("LH_DIST_ENV='mpi'");
  }
  SECTION("collective timeout: whole seconds >= 1") {
    env.set("LH_DIST_TIMEOUT_S", "30");
    CHECK(lh::detect_dist_env().collective_timeout == std::chrono::seconds(30));
    env.set("LH_DIST_TIMEOUT_S", "10m");
    expect_env_error("LH_DIST_TIMEOUT_S='10m' is not an integer");
    env.set("LH_DIST_TIMEOUT_S", "0");
    expect_env_error("LH_DIST_TIMEOUT_S='0' must be at least 1");
  }
}

TEST_CASE("dist env: Slurm variables", "[cpu][dist]") {
  ScopedEnv env;
  env.set("SLURM_PROCID", "5").set("SLURM_NTASKS", "8").set("SLURM_LOCALID", "1").set("SLURM_NODEID", "1");
  env.set("SLURM_TASKS_PER_NODE", "4(x2)").set("SLURM_NODELIST", "gpu[07-08]").set("SLURM_JOB_ID", "1234");
  lh::DistEnv e = lh::detect_dist_env();
  CHECK(e.source == "slurm");
  CHECK(e.rank == 5);
  CHECK(e.world_size == 8);
  CHECK(e.local_rank == 1);
  CHECK(e.local_world_size == 4);
  CHECK(e.master_addr == "gpu07");  // first host of the node list
  CHECK(e.master_port == 21234);    // derived from the job id: the same on every rank

  SECTION("uneven tasks per node are read for this node") {
    env.set("SLURM_TASKS_PER_NODE", "5,3").set("SLURM_PROCID", "6").set("SLURM_LOCALID", "1");
    CHECK(lh::detect_dist_env().local_world_size == 3);
  }
  SECTION("SLURM_NTASKS_PER_NODE wins over the per-node list") {
    env.set("SLURM_NTASKS_PER_NODE", "4").set("SLURM_TASKS_PER_NODE", "garbage");
    CHECK(lh::detect_dist_env().local_world_size == 4);
  }
  SECTION("the node list wins over the launch node (a login node under salloc), MASTER_ADDR over both") {
    env.set("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.7");
    CHECK(lh::detect_dist_env().master_addr == "gpu07");
    env.set("SLURM_NODELIST", "rack[1-2]-node[1-4]");  // too complex to guess from
    CHECK(lh::detect_dist_env().master_addr == "10.0.0.7");
    env.set("MASTER_ADDR", "head").set("MASTER_PORT", "40000");
    e = lh::detect_dist_env();
    CHECK(e.master_addr == "head");
    CHECK(e.master_port == 40000);
  }
  SECTION("comma-separated node lists") {
    env.set("SLURM_NODELIST", "alpha,beta[1-2]");
    CHECK(lh::detect_dist_env().master_addr == "alpha");
  }
  SECTION("LH_DIST_ENV=single ignores the allocation") {
    env.set("LH_DIST_ENV", "single");
    CHECK(lh::detect_dist_env().world_size == 1);
  }
  SECTION("a node list too complex to guess asks for MASTER_ADDR") {
    env.set("SLURM_NODELIST", "rack[1-2]-node[1-4]");
    expect_env_error("MASTER_ADDR");
  }
  SECTION("rank outside the task count") {
    env.set("SLURM_PROCID", "8");
    expect_env_error("SLURM_PROCID=8 is outside [0, SLURM_NTASKS=8)");
  }
  SECTION("malformed task counts") {
    env.set("SLURM_NTASKS", "eight");
    expect_env_error("SLURM_NTASKS='eight'");
  }
}

TEST_CASE("shard arithmetic: padded sizes", "[cpu][dist]") {
  for (size_t align : {size_t(1), size_t(4), size_t(64)}) {
    for (size_t total : {size_t(0), size_t(1), size_t(63), size_t(64), size_t(65), size_t(1000), size_t(123457)}) {
      for (int world = 1; world <= 8; ++world) {
        INFO("total " << total << ", world " << world << ", align " << align);
        const size_t count = lh::shard_count(total, world, align);
        const size_t padded = lh::padded_total(total, world, align);
        CHECK(count % align == 0);
        CHECK(padded == count * size_t(world));
        CHECK(padded >= total);
        CHECK(padded - total < size_t(world) * align);  // padding never exceeds one align per rank
      }
    }
  }
  // A worked example (docs/distributed.md): 1000 floats over 3 ranks in 64-element units.
  CHECK(lh::shard_count(1000, 3, 64) == 384);
  CHECK(lh::padded_total(1000, 3, 64) == 1152);
  CHECK_THROWS_AS(lh::shard_count(10, 0, 1), lh::DistError);
  CHECK_THROWS_AS(lh::shard_count(10, 2, 0), lh::DistError);
}
