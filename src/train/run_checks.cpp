#include "train/run_checks.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace lh {
namespace fs = std::filesystem;

void check_disjoint(const std::vector<std::string>& train, const std::vector<std::string>& val) {
  std::set<std::string> trained;
  for (const std::string& path : train) trained.insert(fs::weakly_canonical(path).string());
  for (const std::string& path : val)
    if (trained.count(fs::weakly_canonical(path).string()))
      // A directory in data.train takes every *.bin inside, the val_* shards of a `data` build too.
      throw ConfigError("data.val", path + " is a training shard too (data.train); validation would score data the "
                                           "model trains on. A directory in data.train takes every *.bin inside: "
                                           "name the train_*.bin shards instead");
}

std::string val_named_train_shards(const std::vector<std::string>& train) {
  std::vector<std::string> named;
  for (const auto& shard : train)
    if (fs::path(shard).filename().string().rfind("val_", 0) == 0) named.push_back(shard);
  if (named.empty()) return "";
  return fmt::format("data.train takes {} shard(s) named as validation data ({}{}): they are trained on; name the "
                     "train_*.bin shards if that is not meant",
                     named.size(), named.front(), named.size() > 1 ? ", ..." : "");
}

void check_run_dir_usable(const std::string& run_dir) {
  fs::path probe = fs::absolute(run_dir);  // the nearest part of it that exists
  while (!fs::exists(probe) && probe.has_parent_path() && probe != probe.parent_path()) probe = probe.parent_path();
  const auto refuse = [&](const std::string& why) {
    return ConfigError("logging.dir", run_dir + " cannot hold the run: " + why);
  };
  if (!fs::is_directory(probe)) throw refuse(probe.string() + " is not a directory");
  if (::access(probe.c_str(), W_OK | X_OK) != 0) throw refuse(probe.string() + " is not writable");
}

namespace {
// Whether a run wrote this file: config.json is a JSON object with a config's model and data
// sections (not a full load: another build's keys may differ); metrics.jsonl is empty or starts
// with a record of ours.
bool written_by_a_run(const fs::path& file) {
  try {
    if (file.filename() == "config.json") {
      const nlohmann::json j = Config::load_json_file(file.string());
      return j.is_object() && j.contains("model") && j.contains("data") && j.contains("training");
    }
    std::ifstream in(file);
    std::string first;
    if (!std::getline(in, first)) return true;
    const nlohmann::json record = nlohmann::json::parse(first);
    return record.is_object() && record.contains("step");
  } catch (const std::exception&) {
    return false;
  }
}
}  // namespace

void check_run_files(const std::string& run_dir, bool resuming) {
  std::vector<std::string> runs, others;
  for (const char* name : {"config.json", "metrics.jsonl"}) {
    const fs::path file = fs::path(run_dir) / name;
    if (fs::exists(file)) (written_by_a_run(file) ? runs : others).push_back(name);
  }
  if (!others.empty())
    throw ConfigError("logging.dir", fmt::format("{} holds {} that no run wrote and a run would replace: move them "
                                                 "away, or set logging.dir to a new directory",
                                                 run_dir, fmt::join(others, " and ")));
  if (!resuming && !runs.empty())
    throw ConfigError("logging.dir", fmt::format("{} already holds an earlier run's {} (it has no checkpoint); pass "
                                                 "--resume to restart that run there, or set logging.dir to a new "
                                                 "directory",
                                                 run_dir, fmt::join(runs, " and ")));
}

std::string missing_dense_tail(const Config& cfg) {
  const auto& phases = cfg.attention.phases;
  const int steps = cfg.training.steps;
  if (phases.size() < 2 || phases.back().attention != "dense" || cfg.phase_at(steps - 1).attention == "dense")
    return "";
  const size_t last = phases.size() - 1;
  std::string fix;
  // Every earlier boundary scaled to the first 80% of the run (boundaries must rise from 1 on).
  const int tail_start = std::max(int(last), steps * 4 / 5);
  if (tail_start < steps) {
    fix = "shorten the phases with the run, e.g.";
    for (size_t i = 0; i < last; ++i) {
      const int64_t scaled = int64_t(phases[i].until_step) * tail_start / phases[last - 1].until_step;
      const int until = std::max(int(i + 1), int(scaled));
      fix += fmt::format(" --set attention.phases[{}].until_step={}", i, until);
    }
    fix += "; ";
  }
  return fmt::format("{} ends before attention.phases[{}] (dense) starts at step {}: the model would "
                     "never train dense. To run part of the plan, keep training.steps and stop early with --stop-at; "
                     "else {}or give phases without the dense one",
                     steps, last, phases[last - 1].until_step + 1, fix);
}

std::vector<std::string> idle_phase_warnings(const Config& cfg) {
  std::vector<std::string> out;
  const auto& phases = cfg.attention.phases;
  const bool dense_tail_missing = !missing_dense_tail(cfg).empty();  // the last phase: said there
  for (size_t i = 0; i < phases.size(); ++i) {
    const AttentionPhase& p = phases[i];
    const bool said_elsewhere = dense_tail_missing && i + 1 == phases.size();
    if (i > 0 && phases[i - 1].until_step >= cfg.training.steps && !said_elsewhere)
      out.push_back(fmt::format("attention.phases[{}] ({}) starts after training.steps = {}: it does not run unless a "
                                "resume extends the run", i, p.attention, cfg.training.steps));
    const auto dense = p.options.find("dense_layers");
    if (p.attention == "lighthouse" && dense != p.options.end() && dense->is_array() &&
        int(dense->size()) == cfg.model.n_layers)
      out.push_back(fmt::format("attention.phases[{}].options.dense_layers lists every layer: the phase runs dense "
                                "attention", i));
  }
  return out;
}

}  // namespace lh
