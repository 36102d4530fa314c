// The TCP rendezvous between real processes over loopback (fork()), and `lighthouse launch`
// end to end: all ranks meet, a failing rank stops the others and is named.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lighthouse/device.h"
#include "lighthouse/dist.h"
#include "support/run_binary.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

lh::DistEnv loopback(int rank, int world, int port) {
  lh::DistEnv e;
  e.rank = rank, e.world_size = world, e.local_rank = rank, e.local_world_size = world;
  e.master_addr = "127.0.0.1", e.master_port = port, e.source = "test";
  return e;
}

std::vector<uint8_t> nccl_like_id() {
  std::vector<uint8_t> id(128);
  for (size_t i = 0; i < id.size(); ++i) id[i] = uint8_t(i * 37 + 11);
  return id;
}

// Runs a rendezvous in a child process. The child exits 0 when it got `expect` (or, when
// `error_needle` is given, when it failed with a message containing it), else non-zero. Only
// _exit() in the child: Catch2's state belongs to the parent.
pid_t fork_rank(const lh::DistEnv& env, std::chrono::milliseconds delay, std::chrono::milliseconds timeout,
                const std::vector<uint8_t>& expect, const std::string& error_needle = "") {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid > 0) return pid;
  std::this_thread::sleep_for(delay);
  try {
    const auto got = lh::rendezvous_broadcast(env, env.rank == 0 ? expect : std::vector<uint8_t>(), timeout);
    ::_exit(error_needle.empty() && got == expect ? 0 : 10);
  } catch (const lh::DistError& e) {
    if (!error_needle.empty() && std::string(e.what()).find(error_needle) != std::string::npos) ::_exit(0);
    std::fprintf(stderr, "rank %d: %s\n", env.rank, e.what());
    ::_exit(11);
  } catch (...) {
    ::_exit(12);
  }
}

// Exit code of a child, or -1 (after killing it) if it is still running at the deadline.
int wait_exit(pid_t pid, Clock::time_point deadline) {
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(10ms);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

using RunResult = lh::testing::CliResult;
RunResult run_binary(const std::string& args) { return lh::testing::run_lighthouse(args); }

}  // namespace

TEST_CASE("rendezvous: four processes over loopback all receive rank 0's payload", "[cpu][dist]") {
  const int port = lh::find_free_port();
  const auto id = nccl_like_id();
  std::vector<pid_t> pids;
  // Rank 0 starts last, so the others must retry their connections until it listens.
  for (int r = 1; r < 4; ++r) pids.push_back(fork_rank(loopback(r, 4, port), 0ms, 20s, id));
  pids.push_back(fork_rank(loopback(0, 4, port), 300ms, 20s, id));
  const auto deadline = Clock::now() + 30s;
  for (size_t i = 0; i < pids.size(); ++i) {
    INFO("child " << i);
    CHECK(wait_exit(pids[i], deadline) == 0);
  }
}

TEST_CASE("rendezvous: world size 1 returns the payload without a network", "[cpu][dist]") {
  const auto id = nccl_like_id();
  CHECK(lh::rendezvous_broadcast(loopback(0, 1, 1), id, 10ms) == id);
}

TEST_CASE("rendezvous: rank 0 times out naming the missing rank", "[cpu][dist]") {
  const int port = lh::find_free_port();
  // Rank 1 arrives, rank 2 never does. Rank 1 must learn why from rank 0 instead of hanging.
  const pid_t rank1 = fork_rank(loopback(1, 3, port), 0ms, 20s, {}, "missing ranks: 2");
  const auto t0 = Clock::now();
  try {
    lh::rendezvous_broadcast(loopback(0, 3, port), nccl_like_id(), 1000ms);
    FAIL("rendezvous succeeded with a rank missing");
  } catch (const lh::DistError& e) {
    INFO("message: " << e.what());
    CHECK_THAT(e.what(), Catch::Matchers::Contains("2 of 3 ranks arrived; missing ranks: 2"));
    CHECK_THAT(e.what(), Catch::Matchers::Contains("rank 0"));
  }
  CHECK(Clock::now() - t0 < 5s);
  CHECK(wait_exit(rank1, Clock::now() + 10s) == 0);
}

TEST_CASE("rendezvous: a connection that never speaks does not hold up the ranks behind it", "[cpu][dist]") {
  const int port = lh::find_free_port();
  // A stray client (a health check, a port scanner) connects first and then stays silent.
  const pid_t stray = ::fork();
  REQUIRE(stray >= 0);
  if (stray == 0) {
    std::this_thread::sleep_for(200ms);
    for (int attempt = 0; attempt < 100; ++attempt) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(uint16_t(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        std::this_thread::sleep_for(40s);  // silent, until killed
        ::_exit(0);
      }
      ::close(fd);
      std::this_thread::sleep_for(20ms);
    }
    ::_exit(1);
  }
  const auto id = nccl_like_id();
  const pid_t rank1 = fork_rank(loopback(1, 2, port), 1500ms, 40s, id);  // well after the stray
  const auto t0 = Clock::now();
  CHECK(lh::rendezvous_broadcast(loopback(0, 2, port), id, 40s) == id);
  // Rank 0 waited out the stray's silence (so the case under test happened), then dropped it a few
  // seconds in, not at the deadline.
  CHECK(Clock::now() - t0 >= 4s);
  CHECK(Clock::now() - t0 < 20s);
  CHECK(wait_exit(rank1, Clock::now() + 10s) == 0);
  ::kill(stray, SIGKILL);
  int status = 0;
  ::waitpid(stray, &status, 0);
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));  // it had connected and was still silent
}

TEST_CASE("rendezvous: a rank that cannot reach rank 0 names the master address", "[cpu][dist]") {
  const int port = lh::find_free_port();  // nobody listens there
  try {
    lh::rendezvous_broadcast(loopback(1, 2, port), {}, 500ms);
    FAIL("rendezvous succeeded without rank 0");
  } catch (const lh::DistError& e) {
    INFO("message: " << e.what());
    CHECK_THAT(e.what(), Catch::Matchers::Contains("rank 1"));
    CHECK_THAT(e.what(), Catch::Matchers::Contains("127.0.0.1:" + std::to_string(port)));
  }
}

TEST_CASE("rendezvous: duplicate ranks and disagreeing world sizes fail on every rank", "[cpu][dist]") {
  const int port = lh::find_free_port();
  std::string needle, child_needle;
  std::vector<pid_t> pids;
  SECTION("two processes claim rank 1") {
    needle = child_needle = "duplicate rank 1";
    pids.push_back(fork_rank(loopback(1, 3, port), 0ms, 20s, {}, child_needle));
    pids.push_back(fork_rank(loopback(1, 3, port), 100ms, 20s, {}, child_needle));
  }
  SECTION("a rank with another world size") {
    needle = child_needle = "rank 1 has world size 4 but rank 0 has 2";
    pids.push_back(fork_rank(loopback(1, 4, port), 0ms, 20s, {}, child_needle));
  }
  const int world = needle.find("duplicate") != std::string::npos ? 3 : 2;
  try {
    lh::rendezvous_broadcast(loopback(0, world, port), nccl_like_id(), 10s);
    FAIL("rendezvous succeeded");
  } catch (const lh::DistError& e) {
    INFO("message: " << e.what());
    CHECK_THAT(e.what(), Catch::Matchers::Contains(needle));
  }
  // The other ranks got rank 0's reason at once, long before their own 20 s timeout.
  const auto deadline = Clock::now() + 5s;
  for (pid_t p : pids) CHECK(wait_exit(p, deadline) == 0);
}

TEST_CASE("launch: all ranks rendezvous through the launcher", "[cpu][dist]") {
  const RunResult r = run_binary("launch --gpus 3 -- dist-check --timeout 30");
  INFO(r.output);
  CHECK(r.code == 0);
  for (int rank = 0; rank < 3; ++rank) {
    CHECK_THAT(r.output, Catch::Matchers::Contains("rank " + std::to_string(rank) + "/3 (local " +
                                                   std::to_string(rank) + "/3) via torchrun"));
    CHECK_THAT(r.output, Catch::Matchers::Contains("rank " + std::to_string(rank) + "/3 rendezvous ok"));
  }
  if (lh::cuda_device_count() < 3)  // some rank has no device of its own: said at once, not at `train`
    CHECK_THAT(r.output, Catch::Matchers::Contains("needs one CUDA device per rank") &&
                             Catch::Matchers::Contains("only the rendezvous was checked"));
}

TEST_CASE("launch: a failing rank is named and stops the others", "[cpu][dist]") {
  SECTION("a rank with a bad config") {
    const RunResult r = run_binary("launch --gpus 2 -- train --config /nonexistent/config.json");
    INFO(r.output);
    CHECK(r.code != 0);
    CHECK_THAT(r.output, Catch::Matchers::Matches("(.|\\n)*launch: rank [01] failed with exit status [1-9](.|\\n)*"));
  }
  SECTION("the surviving ranks are stopped instead of waiting out their timeout") {
    const RunResult r = run_binary("launch --gpus 3 --grace 5 -- dist-check --timeout 120 --fail-rank 1");
    INFO(r.output);
    CHECK(r.code != 0);
    CHECK_THAT(r.output, Catch::Matchers::Contains("launch: rank 1 failed with exit status 1"));
    CHECK(r.seconds < 30);
  }
  SECTION("no command") {
    const RunResult r = run_binary("launch --gpus 2");
    INFO(r.output);
    CHECK(r.code != 0);
  }
}
