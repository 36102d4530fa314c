// lighthouse dist-check [--timeout S] [--nccl] [--fail-rank R] [--drop-rank R]
// A quick check of a distributed launch before a long job: each rank reports what it detected,
// all ranks rendezvous with rank 0 over TCP, and with --nccl they run each collective once on
// their GPU and verify the results. Also the launcher's test workload (--fail-rank).
#include <cstdio>
#include <vector>

#include <cuda_runtime_api.h>

#include "cli/commands.h"
#include "lighthouse/dist.h"

namespace {

struct DistCheckArgs {
  double timeout_s = 60;
  bool nccl = false;
  int fail_rank = -1;
  int drop_rank = -1;
};

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("dist-check: ") + what + ": " + cudaGetErrorString(e));
}

// Every collective once, with values that expose wrong offsets: rank r contributes r + 1 (+ i).
void check_collectives(lh::Communicator& comm) {
  const int r = comm.rank(), w = comm.world_size();
  const size_t n = 1000;  // per rank, deliberately not a multiple of anything
  float* dev = nullptr;
  cuda_ok(cudaMalloc(reinterpret_cast<void**>(&dev), n * size_t(w) * sizeof(float)), "cudaMalloc");
  auto expect = [&](size_t count, auto want, const char* op) {
    std::vector<float> host(count);
    cuda_ok(cudaMemcpy(host.data(), dev, count * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    for (size_t i = 0; i < count; ++i)
      if (host[i] != want(i))
        throw std::runtime_error("dist-check: rank " + std::to_string(r) + ": " + op + " gave " +
                                 std::to_string(host[i]) + " at " + std::to_string(i) + ", expected " +
                                 std::to_string(want(i)));
  };
  std::vector<float> host(n * size_t(w));
  for (size_t i = 0; i < host.size(); ++i) host[i] = float(r + 1) + float(i % 7);
  const float sum_ranks = float(w * (w + 1) / 2);
  cuda_ok(cudaMemcpy(dev, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  comm.all_reduce_sum(dev, host.size(), nullptr);
  comm.synchronize(nullptr);
  expect(host.size(), [&](size_t i) { return sum_ranks + float(w) * float(i % 7); }, "all_reduce_sum");

  cuda_ok(cudaMemcpy(dev, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  comm.reduce_scatter_sum(dev, dev + size_t(r) * n, n, nullptr);  // in place, as ZeRO-1 uses it
  comm.synchronize(nullptr);
  cuda_ok(cudaMemcpy(dev, dev + size_t(r) * n, n * sizeof(float), cudaMemcpyDeviceToDevice), "cudaMemcpy");
  expect(n, [&](size_t i) { return sum_ranks + float(w) * float((size_t(r) * n + i) % 7); }, "reduce_scatter_sum");

  std::vector<float> mine(n, float(r));
  cuda_ok(cudaMemcpy(dev + size_t(r) * n, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  comm.all_gather(dev + size_t(r) * n, dev, n * sizeof(float), nullptr);  // in place
  comm.synchronize(nullptr);
  expect(n * size_t(w), [&](size_t i) { return float(i / n); }, "all_gather");
  comm.barrier();
  cudaFree(dev);
}

void run_dist_check(const DistCheckArgs& a) {
  const lh::DistEnv env = lh::detect_dist_env();
  std::printf("dist-check: %s\n", env.describe().c_str());
  std::fflush(stdout);
  if (env.rank == a.fail_rank)
    throw std::runtime_error("dist-check: rank " + std::to_string(env.rank) + " fails on purpose (--fail-rank)");
  const auto timeout = std::chrono::milliseconds(int64_t(a.timeout_s * 1000));
  const std::string token = "lighthouse dist-check, world " + std::to_string(env.world_size);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<uint8_t> got =
      lh::rendezvous_broadcast(env, env.rank == 0 ? std::vector<uint8_t>(token.begin(), token.end())
                                                  : std::vector<uint8_t>(), timeout);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (std::string(got.begin(), got.end()) != token)
    throw std::runtime_error("dist-check: rank " + std::to_string(env.rank) + " received a wrong payload");
  std::printf("dist-check: rank %d/%d rendezvous ok (%.0f ms)\n", env.rank, env.world_size, ms);
  std::fflush(stdout);
  if (!a.nccl) return;
  auto comm = env.distributed() ? lh::make_nccl_communicator(env, env.local_rank, timeout)
                                : lh::make_local_communicator();
  if (env.rank == a.drop_rank) {
    // Leaves the job after joining the communicator: the others' first collective must then fail
    // or time out with an error instead of hanging.
    std::printf("dist-check: rank %d leaves after NCCL init (--drop-rank)\n", env.rank);
    return;
  }
  if (env.distributed()) check_collectives(*comm);
  std::printf("dist-check: rank %d/%d nccl collectives ok on device %d\n", env.rank, env.world_size, env.local_rank);
}

}  // namespace

void register_dist_check_command(CLI::App& app) {
  auto args = std::make_shared<DistCheckArgs>();
  CLI::App* cmd = app.add_subcommand("dist-check", "Check a distributed launch: environment, rendezvous, NCCL");
  cmd->add_option("--timeout", args->timeout_s, "Seconds to wait for the other ranks")->check(CLI::PositiveNumber);
  cmd->add_flag("--nccl", args->nccl, "Also run each NCCL collective once on GPU local_rank and verify it");
  cmd->add_option("--fail-rank", args->fail_rank, "Make this rank fail at once (to test the launcher)");
  cmd->add_option("--drop-rank", args->drop_rank, "With --nccl: this rank exits after NCCL init (to test timeouts)");
  cmd->callback([args]() { run_dist_check(*args); });
}
