#include "train/run_checks.h"

#include <unistd.h>

#include <filesystem>
#include <set>

#include <fmt/format.h>

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

void check_no_run_files(const std::string& run_dir) {
  std::vector<std::string> present;
  for (const char* name : {"config.json", "metrics.jsonl"})
    if (fs::exists(fs::path(run_dir) / name)) present.push_back(name);
  if (present.empty()) return;
  throw ConfigError("logging.dir", fmt::format("{} already holds {} (an earlier run's, or files of your own) that a "
                                               "new run would replace; pass --resume to continue or restart the run "
                                               "there, or set logging.dir to a new directory",
                                               run_dir, fmt::join(present, " and ")));
}

std::vector<std::string> idle_phase_warnings(const Config& cfg) {
  std::vector<std::string> out;
  const auto& phases = cfg.attention.phases;
  for (size_t i = 0; i < phases.size(); ++i) {
    const AttentionPhase& p = phases[i];
    if (i > 0 && phases[i - 1].until_step >= cfg.training.steps)
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
