// lighthouse train [--config FILE] [--resume] [--dry-run] [--set key=value ...]

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/validators.h"
#include "cli/quickstart.h"
#include "lighthouse/dist.h"
#include "lighthouse/trainer.h"

namespace {
struct TrainArgs {
  std::string config;
  bool resume = false;
  bool quiet = false;
  bool dry_run = false;
  int stop_at = -1;
  double device_memory_gib = 0;
  std::string trace;
  int trace_from = 3, trace_steps = 2;
  std::vector<std::string> overrides;
};

void run_train(const TrainArgs& a) {
  const bool quickstart = a.config.empty();
  // Syntax errors name the file and line; invalid values the file or the --set they came from.
  const lh::Config cfg = quickstart ? lh::Config::load(lh::quickstart_config().to_json(), a.overrides, "quickstart config")
                                    : lh::Config::load_file(a.config, a.overrides);
  // The quickstart resumes by default, so running the README command twice continues the run
  // (or reports that it is complete) instead of refusing the existing run directory.
  const bool resume = a.resume || quickstart;
  if (quickstart) {
    spdlog::info("no --config given: running the embedded quickstart (configs/quickstart.json)");
    lh::ensure_quickstart_data(cfg);
  }
  // One process per GPU under `lighthouse launch`, torchrun or Slurm (docs/distributed.md).
  const lh::DistEnv env = lh::detect_dist_env();
  std::unique_ptr<lh::Backend> backend;
  std::unique_ptr<lh::Communicator> comm;
  if (env.distributed()) {
    if (cfg.training.device == "cpu") throw std::runtime_error("data-parallel training needs training.device cuda or auto");
    env.require_gpu("data-parallel training");
    if (env.rank != 0) spdlog::set_level(spdlog::level::warn);  // rank 0 speaks for the job
    spdlog::info("data parallel: {}", env.describe());
    backend = lh::make_cuda_backend(env.local_rank);
    comm = lh::make_nccl_communicator(env, env.local_rank, env.collective_timeout);
  } else {
    backend = lh::make_backend(cfg.training.device);
  }
  if (a.device_memory_gib > 0) backend->limit_memory(lh::cli::gib_to_bytes(a.device_memory_gib));
  lh::TrainOptions options{resume, a.quiet, a.stop_at};
  options.trace_path = a.trace, options.trace_from = a.trace_from, options.trace_steps = a.trace_steps;
  options.dry_run = a.dry_run;
  options.resume_by_default = quickstart && !a.resume;
  const lh::TrainSummary s = lh::train(cfg, *backend, options, comm.get());
  if (a.dry_run) {
    const std::string memory = s.memory.empty() ? "nothing is left to train"
                                                : fmt::format("the memory of {} attention phase{}", s.memory.size(),
                                                              s.memory.size() == 1 ? "" : "s");
    spdlog::info("dry run: checked the config, the data{} and {}; nothing was trained or written to {}",
                 s.last_checkpoint.empty() ? "" : ", the checkpoint " + s.last_checkpoint, memory, cfg.logging.dir);
    return;
  }
  if (s.steps_run == 0) {
    spdlog::info("done: step {}, nothing to train in this call | last checkpoint {}", s.steps_done,
                 s.last_checkpoint.empty() ? "none" : s.last_checkpoint);
    return;
  }
  spdlog::info("done: step {} | loss {:.4f} | val_loss {} | {:.0f} tokens/s | last checkpoint {}", s.steps_done,
               s.last_loss, s.last_val_loss < 0 ? std::string("n/a") : fmt::format("{:.4f}", s.last_val_loss),
               s.tokens_per_s, s.last_checkpoint.empty() ? "none" : s.last_checkpoint);
  if (s.interrupted) throw std::runtime_error("interrupted; resume with --resume");
}
}  // namespace

void register_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model from a JSON config (no config: the quickstart)");
  cmd->add_option("-c,--config", args->config, "Config file (JSON); see docs/config.md")->check(CLI::ExistingFile);
  cmd->add_flag("--resume", args->resume, "Continue from the newest complete checkpoint in logging.dir (none there: start the run, "
                "with a warning; so one job script serves every chunk)");
  cmd->add_option("--set", args->overrides, "Override a config key, e.g. --set training.steps=500 (repeatable)");
  cmd->add_option("--stop-at", args->stop_at, "Checkpoint and exit after this many steps (for job time limits; a run already there trains nothing)")
      ->check(lh::cli::whole_at_least(1))
      ->default_str("");  // not set: train to training.steps
  cmd->add_flag("-q,--quiet", args->quiet, "No per-step progress lines");
  lh::cli::add_device_memory_option(cmd, args->device_memory_gib);
  cmd->add_flag("--dry-run", args->dry_run,
                "Check the config, the data, the checkpoint to resume and that every attention phase left fits the "
                "device's memory (each is laid out once, as every run does before its first step); print what each "
                "holds; train and write nothing");
  cmd->add_option("--trace", args->trace,
                  "Record the GPU kernels, copies and memsets of some steps (CUPTI) into this Chrome trace file "
                  "(rank r > 0 of a data-parallel run: the rank before the extension, t.json -> t.rank<r>.json) and log where "
                  "their time went");
  cmd->add_option("--trace-from", args->trace_from, "First traced step, numbered from 1 (the default is past warm-up)")
      ->check(lh::cli::whole_at_least(1));
  cmd->add_option("--trace-steps", args->trace_steps, "How many steps to trace")->check(lh::cli::whole_at_least(1));
  cmd->callback([args]() { run_train(*args); });
}
