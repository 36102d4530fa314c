// lighthouse launch --gpus N [--port P] -- <subcommand> [args...]
// Single-node data parallelism without torchrun: runs N copies of this binary with the torchrun
// variables set (rank r uses CUDA device r), waits for them, and stops the rest when one fails so
// a crashed rank never leaves the others blocked in a collective.
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/validators.h"
#include "lighthouse/dist.h"

extern char** environ;

namespace {

struct LaunchArgs {
  int gpus = 1;
  int port = 0;
  double grace_s = 30;
  std::vector<std::string> command;
};

volatile std::sig_atomic_t g_signal = 0;
void on_signal(int sig) { g_signal = sig; }

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) throw std::runtime_error(std::string("launch: cannot find this binary: ") + std::strerror(errno));
  return std::string(buf, size_t(n));
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "status " + std::to_string(status);
}

// The parent's environment with the rank variables replaced. Built before fork(): the child only
// calls execve, so nothing in it can deadlock on a lock another thread held at fork time.
std::vector<std::string> rank_environment(int rank, int world, int port) {
  const std::vector<std::pair<std::string, std::string>> vars = {
      {"RANK", std::to_string(rank)},       {"WORLD_SIZE", std::to_string(world)},
      {"LOCAL_RANK", std::to_string(rank)}, {"LOCAL_WORLD_SIZE", std::to_string(world)},
      {"MASTER_ADDR", "127.0.0.1"},         {"MASTER_PORT", std::to_string(port)},
      {"LH_DIST_ENV", "torchrun"}};  // our variables win even inside a Slurm allocation
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    bool replaced = false;
    for (const auto& v : vars) replaced |= kv.compare(0, v.first.size() + 1, v.first + "=") == 0;
    if (!replaced) env.push_back(kv);
  }
  for (const auto& v : vars) env.push_back(v.first + "=" + v.second);
  return env;
}

pid_t spawn(const std::string& exe, const std::vector<std::string>& args, const std::vector<std::string>& env) {
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("launch: fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    // If the launcher itself is killed (SIGKILL cannot be forwarded), the ranks go with it.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);
    ::execve(exe.c_str(), argv.data(), envp.data());
    const char msg[] = "launch: execve failed\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(127);
  }
  return pid;
}

void run_launch(const LaunchArgs& a) {
  if (a.command.empty())
    throw std::runtime_error("launch: no command given; usage: lighthouse launch --gpus N -- train --config FILE");
  const int port = a.port > 0 ? a.port : lh::find_free_port();
  const std::string exe = self_exe();
  std::vector<std::string> args = {exe};
  args.insert(args.end(), a.command.begin(), a.command.end());

  // Forward Ctrl-C / SIGTERM (e.g. a job scheduler's) to the ranks instead of dying first.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);

  spdlog::info("launch: {} ranks on this node, rendezvous at 127.0.0.1:{}", a.gpus, port);
  std::vector<pid_t> pids(size_t(a.gpus), -1);
  std::vector<bool> running(size_t(a.gpus), false);
  auto signal_all = [&](int sig) {
    for (size_t r = 0; r < pids.size(); ++r)
      if (running[r]) ::kill(pids[r], sig);
  };
  try {
    for (int r = 0; r < a.gpus; ++r) {
      pids[size_t(r)] = spawn(exe, args, rank_environment(r, a.gpus, port));
      running[size_t(r)] = true;
    }
  } catch (...) {
    signal_all(SIGKILL);
    while (::wait(nullptr) > 0) {}
    throw;
  }

  using Clock = std::chrono::steady_clock;
  int live = a.gpus, failed_rank = -1, failed_status = 0, stop_signal = 0;
  bool stopping = false, killed = false;
  Clock::time_point kill_at{};
  auto stop_all = [&] {
    stopping = true;
    signal_all(SIGTERM);  // the trainer checkpoints and exits on SIGTERM
    kill_at = Clock::now() + std::chrono::milliseconds(int64_t(a.grace_s * 1000));
  };
  while (live > 0) {
    int status = 0;
    const pid_t p = ::waitpid(-1, &status, WNOHANG);
    if (p > 0) {
      for (size_t r = 0; r < pids.size(); ++r) {
        if (pids[r] != p || !running[r]) continue;
        running[r] = false;
        --live;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok && failed_rank < 0 && !stopping) {
          failed_rank = int(r);
          failed_status = status;
          spdlog::error("launch: rank {} (pid {}) failed with {}; stopping the other ranks", r, p,
                        describe_status(status));
          stop_all();
        } else if (!ok) {
          spdlog::info("launch: rank {} stopped with {}", r, describe_status(status));
        }
      }
      continue;
    }
    if (p < 0 && errno == ECHILD) break;
    if (g_signal && !stopping) {
      stop_signal = g_signal;
      spdlog::warn("launch: got signal {}; stopping all ranks", int(stop_signal));
      stop_all();
    }
    if (stopping && !killed && Clock::now() >= kill_at) {
      spdlog::warn("launch: ranks still running {:.0f} s after SIGTERM; sending SIGKILL", a.grace_s);
      signal_all(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (failed_rank >= 0)
    throw std::runtime_error("launch: rank " + std::to_string(failed_rank) + " failed with " +
                             describe_status(failed_status) + " (the other ranks were stopped)");
  if (stop_signal) throw std::runtime_error("launch: interrupted by signal " + std::to_string(stop_signal));
  spdlog::info("launch: all {} ranks finished", a.gpus);
}

}  // namespace

void register_launch_command(CLI::App& app) {
  auto args = std::make_shared<LaunchArgs>();
  CLI::App* cmd = app.add_subcommand("launch", "Run N ranks of a command on this node (data parallel), torchrun-style");
  cmd->add_option("--gpus", args->gpus, "Number of ranks (one per GPU; rank r uses device r)")
      ->required()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--port", args->port, "Rendezvous port on 127.0.0.1 (default: a free one)")->check(CLI::Range(1, 65535));
  cmd->add_option("--grace", args->grace_s, "Seconds between SIGTERM and SIGKILL when stopping ranks")
      ->check(lh::cli::number_above(0, /*or_equal=*/true, lh::cli::kMaxSeconds));
  cmd->add_option("command", args->command, "The lighthouse subcommand each rank runs, after --")->required();
  cmd->footer("Example: lighthouse launch --gpus 8 -- train --config configs/run.json");
  cmd->callback([args]() { run_launch(*args); });
}
