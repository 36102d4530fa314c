// lighthouse dist-check [--timeout S] [--nccl] [--bandwidth MB] [--fail-rank R] [--drop-rank R]
// A quick check of a distributed launch before a long job: each rank reports what it detected,
// all ranks rendezvous with rank 0 over TCP, and with --nccl they run each collective once on
// their GPU and verify the results; --bandwidth then times the trainer's collectives at a given
// size and prints their bus bandwidth. Also the launcher's test workload (--fail-rank).
#include <cstdio>
#include <functional>
#include <vector>

#include <cuda_runtime_api.h>

#include "cli/commands.h"
#include "cli/validators.h"
#include "lighthouse/config.h"
#include "lighthouse/dist.h"

namespace {

struct DistCheckArgs {
  double timeout_s = 60;
  bool nccl = false;
  int fail_rank = -1;
  int drop_rank = -1;
  double bandwidth_mb = 0;  // 0: no bandwidth measurement
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

  // Bucketed reduce-scatter as the trainer does it: two buckets (the two halves of every rank's
  // data), reduce-scattered in one group, out of place into a separate shard buffer.
  cuda_ok(cudaMemcpy(dev, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  float* shard = nullptr;
  cuda_ok(cudaMalloc(reinterpret_cast<void**>(&shard), n * sizeof(float)), "cudaMalloc");
  const size_t half = n / 2, bucket_elems = half * size_t(w);
  comm.group_start();
  comm.reduce_scatter_sum(dev, shard, half, nullptr);
  comm.reduce_scatter_sum(dev + bucket_elems, shard + half, n - half, nullptr);
  comm.group_end();
  comm.synchronize(nullptr);
  cuda_ok(cudaMemcpy(dev, shard, n * sizeof(float), cudaMemcpyDeviceToDevice), "cudaMemcpy");
  cudaFree(shard);
  expect(n, [&](size_t i) {
    const size_t at = i < half ? size_t(r) * half + i : bucket_elems + size_t(r) * (n - half) + (i - half);
    return sum_ranks + float(w) * float(at % 7);
  }, "grouped reduce_scatter_sum");

  std::vector<float> mine(n, float(r));
  cuda_ok(cudaMemcpy(dev + size_t(r) * n, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  comm.all_gather(dev + size_t(r) * n, dev, n * sizeof(float), nullptr);  // in place
  comm.synchronize(nullptr);
  expect(n * size_t(w), [&](size_t i) { return float(i / n); }, "all_gather");
  comm.barrier();
  cudaFree(dev);
}

// Times the collectives ZeRO-1 uses on a buffer of `mb` MiB (the fp32 gradients, or the gathered
// weights) and prints, on rank 0, algorithm and bus bandwidth as nccl-tests defines them: bus
// bandwidth = bytes / time * (world - 1) / world for reduce-scatter and all-gather, the figure to
// hold against the links' peak. The bucketed reduce-scatter (buckets of training.grad_bucket_mb's
// default, cut as the trainer cuts them, out of place into a shard buffer, in one group) moves the
// same data as one reduce-scatter.
void measure_bandwidth(lh::Communicator& comm, double mb) {
  const int r = comm.rank(), w = comm.world_size();
  const size_t count = lh::shard_count(size_t(mb * double(1 << 20) / sizeof(float)), w, lh::kShardAlign);
  const size_t total = count * size_t(w), bytes = total * sizeof(float);
  float* dev = nullptr;
  cuda_ok(cudaMalloc(reinterpret_cast<void**>(&dev), bytes), "cudaMalloc");
  cuda_ok(cudaMemset(dev, 0, bytes), "cudaMemset");
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda_ok(cudaEventCreate(&start), "cudaEventCreate");
  cuda_ok(cudaEventCreate(&stop), "cudaEventCreate");
  const size_t bucket_bytes = size_t(lh::TrainingConfig{}.grad_bucket_mb * double(1 << 20));
  const auto buckets = lh::plan_shard_buckets(total, w, lh::kShardAlign, bucket_bytes / sizeof(float));
  float* shard = nullptr;
  cuda_ok(cudaMalloc(reinterpret_cast<void**>(&shard), count * sizeof(float)), "cudaMalloc");
  auto time_ms = [&](const std::function<void()>& op) {
    const int warmup = 2, iters = 10;
    for (int i = 0; i < warmup; ++i) op();
    cuda_ok(cudaEventRecord(start, stream), "cudaEventRecord");
    for (int i = 0; i < iters; ++i) op();
    cuda_ok(cudaEventRecord(stop, stream), "cudaEventRecord");
    comm.synchronize(stream);
    float ms = 0;
    cuda_ok(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    return double(ms) / iters;
  };
  struct Row {
    const char* name;
    size_t bytes;
    std::function<void()> op;
  };
  const Row rows[] = {
      {"reduce_scatter fp32", bytes, [&] { comm.reduce_scatter_sum(dev, dev + size_t(r) * count, count, stream); }},
      {"bucketed reduce_scatter", bytes,
       [&] {  // 32 MiB buckets from the end, out of place into a shard buffer, one group
         comm.group_start();
         for (const lh::ShardBucket& b : buckets)
           comm.reduce_scatter_sum(dev + b.begin, shard + b.shard_offset, b.chunk, stream);
         comm.group_end();
       }},
      {"all_gather bf16", bytes / 2,
       [&] { comm.all_gather(reinterpret_cast<char*>(dev) + size_t(r) * bytes / 2 / w, dev, bytes / 2 / w, stream); }},
  };
  for (const Row& row : rows) {
    const double ms = time_ms(row.op);
    const double algbw = double(row.bytes) / (ms * 1e-3) / 1e9;
    if (r == 0)
      std::printf("dist-check: %-21s %8.1f MiB over %d ranks: %8.3f ms, algbw %6.1f GB/s, busbw %6.1f GB/s\n",
                  row.name, double(row.bytes) / double(1 << 20), w, ms, algbw, algbw * (w - 1) / w);
  }
  std::fflush(stdout);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  cudaFree(shard);
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
  // The rendezvous needs no GPU, data-parallel training does: say so now rather than at `train`.
  if (env.distributed()) {
    try {
      env.require_gpu("data-parallel training");
    } catch (const std::exception& e) {
      std::printf("dist-check: warning: %s; only the rendezvous was checked\n", e.what());
    }
  }
  std::fflush(stdout);
  if (!a.nccl) return;
  if (!env.distributed()) {  // one process: no collective to check
    std::printf("dist-check: one process, so no NCCL collectives were run (launch several ranks to check them)\n");
    return;
  }
  env.require_gpu("dist-check --nccl");
  auto comm = lh::make_nccl_communicator(env, env.local_rank, timeout);
  if (env.rank == a.drop_rank) {
    // Leaves the job after joining the communicator: the others' first collective must then fail
    // or time out with an error instead of hanging.
    std::printf("dist-check: rank %d leaves after NCCL init (--drop-rank)\n", env.rank);
    return;
  }
  check_collectives(*comm);
  std::printf("dist-check: rank %d/%d nccl collectives ok on device %d\n", env.rank, env.world_size, env.local_rank);
  if (a.bandwidth_mb > 0) measure_bandwidth(*comm, a.bandwidth_mb);
}

}  // namespace

void register_dist_check_command(CLI::App& app) {
  auto args = std::make_shared<DistCheckArgs>();
  CLI::App* cmd = app.add_subcommand("dist-check", "Check a distributed launch: environment, rendezvous, NCCL");
  cmd->add_option("--timeout", args->timeout_s, "Seconds to wait for the other ranks")->check(lh::cli::number_above(0, false, lh::cli::kMaxSeconds));
  cmd->add_flag("--nccl", args->nccl, "Also run each NCCL collective once on GPU local_rank and verify it");
  cmd->add_option("--bandwidth", args->bandwidth_mb,
                  "With --nccl: time the trainer's collectives on this many MiB and print bus bandwidth")
      ->check(CLI::Range(0.0, 65536.0));
  cmd->add_option("--fail-rank", args->fail_rank, "Make this rank fail at once (to test the launcher)")
      ->default_str("");
  cmd->add_option("--drop-rank", args->drop_rank, "With --nccl: this rank exits after NCCL init (to test timeouts)")
      ->default_str("");
  cmd->callback([args]() { run_dist_check(*args); });
}
