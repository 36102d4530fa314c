// lighthouse train [--config FILE] [--resume] [--set key=value ...]
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/quickstart.h"
#include "lighthouse/trainer.h"

namespace {
struct TrainArgs {
  std::string config;
  bool resume = false;
  bool quiet = false;
  int stop_at = -1;
  std::vector<std::string> overrides;
};

void run_train(const TrainArgs& a) {
  const bool quickstart = a.config.empty();
  nlohmann::json j = quickstart ? lh::quickstart_config().to_json() : nlohmann::json();
  if (!quickstart) j = lh::Config::load_json_file(a.config);  // syntax errors name the file and line
  for (const std::string& o : a.overrides) lh::Config::apply_override(j, o);
  lh::Config cfg;
  try {
    cfg = lh::Config::from_json(j);
  } catch (const lh::ConfigError& e) {
    throw std::runtime_error((quickstart ? std::string("quickstart config") : a.config) + ": " + e.what());
  }
  // The quickstart resumes by default, so running the README command twice continues the run
  // (or reports that it is complete) instead of refusing the existing run directory.
  const bool resume = a.resume || quickstart;
  if (quickstart) {
    spdlog::info("no --config given: running the embedded quickstart (configs/quickstart.json)");
    lh::ensure_quickstart_data(cfg);
  }
  auto backend = lh::make_backend(cfg.training.device);
  const lh::TrainSummary s = lh::train(cfg, *backend, {resume, a.quiet, a.stop_at});
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
  cmd->add_flag("--resume", args->resume, "Continue from the newest complete checkpoint in logging.dir");
  cmd->add_option("--set", args->overrides, "Override a config key, e.g. --set training.steps=500 (repeatable)");
  cmd->add_option("--stop-at", args->stop_at, "Checkpoint and exit after this many steps (for job time limits)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("-q,--quiet", args->quiet, "No per-step progress lines");
  cmd->callback([args]() { run_train(*args); });
}
