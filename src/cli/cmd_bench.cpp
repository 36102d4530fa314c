// lighthouse bench attention|lighthouse|kernels|gemm|train ... : timings as JSON (stdout summary,
// --out file).
#include <fstream>
#include <vector>

#include "cli/commands.h"
#include "cli/validators.h"
#include "lighthouse/bench.h"
#include "lighthouse/device.h"
#include "lighthouse/provenance.h"
#include "lighthouse/trainer.h"

namespace {
struct BenchArgs {
  std::string device = "auto", out, config;
  double device_memory_gib = 0;  // --device-memory of attention, lighthouse, train
  std::vector<std::string> overrides;
  lh::AttentionBenchOptions attention;
  lh::LighthouseBenchOptions lighthouse;
  lh::TrainBenchOptions train;
  lh::GemmBenchOptions gemm;
};

// The result with what produced it (the build's commit; the device and library versions where a
// backend ran it), so that a number in docs/benchmarks.md can be traced to its build.
void write_result(nlohmann::json j, const std::string& path, const lh::Backend& backend) {
  if (path.empty()) return;
  j["provenance"] = lh::provenance(backend);
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) throw std::runtime_error(path + ": cannot write the benchmark result");
}

// The options both layer benchmarks take: the sequence lengths, the head layout and the timed runs.
void add_layer_shape(CLI::App* cmd, std::vector<int>& seq_lens, int& heads, int& kv_heads, int& head_dim, int& iters) {
  cmd->add_option("--seq-lens", seq_lens, "Sequence lengths (space or comma separated)")
      ->delimiter(',')
      ->check(lh::cli::whole_at_least(1));
  cmd->add_option("--heads", heads, "Query heads")->check(lh::cli::whole_at_least(1));
  cmd->add_option("--kv-heads", kv_heads, "Key/value heads (GQA: fewer than --heads, dividing it)")
      ->check(lh::cli::whole_at_least(1));
  cmd->add_option("--head-dim", head_dim, "Head dimension d")->check(lh::cli::whole_at_least(1));
  cmd->add_option("--iters", iters, "Timed runs per sequence length (the median is reported)")
      ->check(lh::cli::whole_at_least(1));
}

// The backend of --device, as large as --device-memory says (the whole device by default).
std::unique_ptr<lh::Backend> bench_backend(const BenchArgs& a) {
  auto be = lh::make_backend(a.device, "--device");
  if (a.device_memory_gib > 0) be->limit_memory(lh::cli::gib_to_bytes(a.device_memory_gib));
  return be;
}
}  // namespace

void register_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd =
      app.add_subcommand("bench", "Benchmarks: attention layer, Lighthouse layer, kernels, GEMMs, training step");
  cmd->require_subcommand(1);
  cmd->add_option("--device", a->device, "auto | cpu | cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--out", a->out, "Write the results as JSON here");

  CLI::App* att = cmd->add_subcommand("attention", "Dense causal attention forward / forward+backward of one layer");
  add_layer_shape(att, a->attention.seq_lens, a->attention.heads, a->attention.kv_heads, a->attention.head_dim,
                  a->attention.iters);
  att->add_option("--batch", a->attention.batch, "Sequences per call (B)")->check(lh::cli::whole_at_least(1));
  att->add_flag("!--non-deterministic", a->attention.deterministic,
                "Use the atomic (non-reproducible) attention backward");
  lh::cli::add_device_memory_option(att, a->device_memory_gib);
  att->callback([a] {
    auto be = bench_backend(*a);
    write_result(lh::bench_attention(*be, a->attention), a->out, *be);
  });

  CLI::App* lhb = cmd->add_subcommand("lighthouse", "Lighthouse attention layer forward+backward, per stage, vs dense");
  add_layer_shape(lhb, a->lighthouse.seq_lens, a->lighthouse.heads, a->lighthouse.kv_heads, a->lighthouse.head_dim,
                  a->lighthouse.iters);
  lhb->add_option("--levels", a->lighthouse.levels, "Pyramid levels L")->check(lh::cli::whole_at_least(1));
  lhb->add_option("--pooling", a->lighthouse.pooling, "Pooling factor p")->check(lh::cli::whole_at_least(1));
  lhb->add_option("--topk", a->lighthouse.topk, "Selection budget k")
      ->check(lh::cli::whole_at_least(1));
  lhb->add_option("--max-dense-len", a->lighthouse.max_dense_len,
                  "Time dense attention only up to this sequence length (its cost grows as N^2)")
      ->check(lh::cli::whole_at_least(0));
  lhb->add_flag("!--non-deterministic", a->lighthouse.deterministic,
                "cuDNN's atomic attention backward (faster; the deterministic one needs O(S^2) workspace per head, "
                "split into kv-head groups and key chunks above its limit)");
  lh::cli::add_device_memory_option(lhb, a->device_memory_gib);
  lhb->callback([a] {
    auto be = bench_backend(*a);
    write_result(lh::bench_lighthouse(*be, a->lighthouse), a->out, *be);
  });

  CLI::App* kern = cmd->add_subcommand("kernels", "Achieved bandwidth of the memory-bound CUDA kernels vs a device copy");
  kern->callback([] {
    if (lh::cuda_device_count() == 0)
      throw std::runtime_error("bench kernels times the CUDA kernels and needs a CUDA device; none is present");
    lh::bench_cuda_kernels();
  });

  CLI::App* gemm =
      cmd->add_subcommand("gemm", "The model's cuBLASLt GEMMs alone at one step's shapes (TFLOP/s, % of peak)");
  gemm->add_option("-c,--config", a->config, "Config file (its model and data.micro_batch x data.seq_len tokens)")
      ->required()
      ->check(CLI::ExistingFile);
  gemm->add_option("--set", a->overrides, "Config overrides, e.g. --set data.seq_len=4096");
  gemm->add_option("--candidates", a->gemm.candidates,
                   "Also time the first this many algorithms of cuBLASLt's heuristic list per GEMM")
      ->check(lh::cli::whole_at_least(0));
  gemm->add_option("--iters", a->gemm.iters, "Timed launches per GEMM (median)")->check(lh::cli::whole_at_least(1));
  gemm->add_option("--peak-tflops", a->gemm.peak_tflops, "Peak dense bf16 TFLOP/s of the card")
      ->check(lh::cli::number_above(0));
  gemm->callback([a] {
    if (a->device == "cpu") throw std::runtime_error("bench gemm times cuBLASLt: it needs --device cuda or auto");
    if (lh::cuda_device_count() == 0)
      throw std::runtime_error("bench gemm times cuBLASLt and needs a CUDA device; none is present");
    const lh::Config cfg = lh::Config::load_file(a->config, a->overrides);
    const auto device = lh::make_backend("cuda", "--device");  // for the result's provenance (cuBLASLt's version)
    write_result(lh::bench_gemms(cfg, a->gemm), a->out, *device);
  });

  CLI::App* tr = cmd->add_subcommand("train", "Training steps of a config on random tokens (tokens/s, MFU)");
  tr->add_option("-c,--config", a->config, "Config file")->required()->check(CLI::ExistingFile);
  tr->add_option("--set", a->overrides, "Config overrides, e.g. --set data.seq_len=4096");
  tr->add_option("--steps", a->train.steps, "Timed steps (the median is reported)")->check(lh::cli::whole_at_least(1));
  tr->add_option("--warmup", a->train.warmup, "Untimed steps first (plans, tuning, clocks)")
      ->check(lh::cli::whole_at_least(0));
  tr->add_option("--peak-tflops", a->train.peak_tflops, "Peak dense bf16 TFLOP/s of the card, for MFU")
      ->check(lh::cli::number_above(0));
  tr->add_option("--trace", a->train.trace_path,
                 "Record the timed steps' GPU kernels, copies and memsets (CUPTI) into this Chrome trace file "
                 "(chrome://tracing, ui.perfetto.dev) and print the GPU's idle time and the time per kernel; "
                 "tracing slows the steps slightly");
  lh::cli::add_device_memory_option(tr, a->device_memory_gib);
  tr->callback([a] {
    const lh::Config cfg = lh::Config::load_file(a->config, a->overrides);
    auto be = bench_backend(*a);
    write_result(lh::bench_train(*be, cfg, a->train), a->out, *be);
  });
}
