#include "train/resume_changes.h"

#include <map>
#include <set>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lighthouse/schedule.h"

namespace lh {
namespace {

// "a.b[1].c" -> value for every leaf of a config's JSON. Lists of objects (attention.phases) are
// walked by index, so a change names its element; other non-empty lists (dense_layers) are leaves.
void flatten(const nlohmann::json& j, const std::string& path, std::map<std::string, nlohmann::json>& out) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) flatten(value, path.empty() ? key : path + "." + key, out);
  } else if (j.is_array() && (j.empty() || j.front().is_object())) {  // an empty list has no leaves
    for (size_t i = 0; i < j.size(); ++i) flatten(j[i], path + "[" + std::to_string(i) + "]", out);
  } else {
    out[path] = j;
  }
}

std::string shortened(const nlohmann::json& v) {
  const std::string text = v.dump();
  return text.size() > 80 ? text.substr(0, 77) + "..." : text;
}

// Every changed key that the warnings of resume_changes do not already explain, or that is where
// the run was found (logging.dir).
std::string other_changes(const Config& then, const Config& now) {
  static const std::set<std::string> explained = {"training.steps", "optimizer.lr", "data.train", "data.seq_len",
                                                  "training.seed", "logging.dir"};
  std::map<std::string, nlohmann::json> a, b;
  flatten(then.to_json(), "", a);
  flatten(now.to_json(), "", b);
  std::set<std::string> keys;
  for (const auto* side : {&a, &b})
    for (const auto& entry : *side) keys.insert(entry.first);
  std::string out;
  for (const std::string& key : keys) {
    if (explained.count(key) || key.rfind("schedule.", 0) == 0 || key.rfind("model.", 0) == 0) continue;
    const auto was = a.find(key), is = b.find(key);
    if (was != a.end() && is != b.end() && was->second == is->second) continue;
    out += fmt::format("{}{} {} -> {}", out.empty() ? "" : ", ", key,
                       was == a.end() ? std::string("(unset)") : shortened(was->second),
                       is == b.end() ? std::string("(unset)") : shortened(is->second));
  }
  return out;
}

}  // namespace

std::vector<std::string> resume_changes(const Config& then, const Config& now, int next_step) {
  std::vector<std::string> out;
  if (next_step < now.training.steps) {
    // The schedule is a function of training.steps: extending a run re-shapes its decay.
    const double was = learning_rate(then.schedule, then.optimizer.lr, next_step, then.training.steps);
    const double is = learning_rate(now.schedule, now.optimizer.lr, next_step, now.training.steps);
    if (was != is) {
      std::string changed;  // the settings the schedule depends on that differ
      auto note = [&](const char* key, const auto& a, const auto& b) {
        if (a != b) changed += fmt::format("{}{} {} -> {}", changed.empty() ? "" : ", ", key, a, b);
      };
      note("training.steps", then.training.steps, now.training.steps);
      note("optimizer.lr", then.optimizer.lr, now.optimizer.lr);
      note("schedule.decay", then.schedule.decay, now.schedule.decay);
      note("schedule.warmup_steps", then.schedule.warmup_steps, now.schedule.warmup_steps);
      note("schedule.min_lr", then.schedule.min_lr, now.schedule.min_lr);
      note("schedule.decay_fraction", then.schedule.decay_fraction, now.schedule.decay_fraction);
      out.push_back(fmt::format("the learning-rate schedule differs from the checkpoint's ({}): step {} runs at lr "
                                "{:.4g}, where the checkpoint's schedule had {:.4g}",
                                changed, next_step + 1, is, was));
    }
  }
  for (const std::string& change : model_setting_changes(then.model, now.model))
    out.push_back(change + ": the weights load as they are; the model now computes with the new setting");
  // The data stream continues by position: over other shards, another batch shape or another seed
  // it is another stream, which may be intended (a new data mix) but is worth saying.
  if (then.data.train != now.data.train)
    out.push_back("data.train differs from the checkpoint's: the data position is kept as a window index over the "
                  "new shards, so the stream does not continue where the old one stopped");
  if (then.training.seed != now.training.seed)
    out.push_back(fmt::format("training.seed {} -> {}: the data order from here on follows the new seed's shuffle",
                              then.training.seed, now.training.seed));
  // A run that had reached its dense tail and now goes back to Lighthouse attention (a phase
  // boundary moved past the checkpoint) no longer ends as it was meant to: said on its own.
  if (next_step > 0 && next_step < now.training.steps && then.phase_at(next_step - 1).attention == "dense" &&
      then.phase_at(next_step).attention == "dense" && now.phase_at(next_step).attention != "dense")
    out.push_back(fmt::format("the checkpoint's run was in its dense phase at step {}; with this config step {} runs "
                              "{} attention again", next_step, next_step + 1, now.phase_at(next_step).attention));
  if (const std::string other = other_changes(then, now); !other.empty())
    out.push_back("other settings differ from the checkpoint's: " + other);
  if (then.data.seq_len != now.data.seq_len)
    out.push_back(fmt::format(
        "data.seq_len {} -> {}: the data position is kept as a window index over the new {}-token windows, so "
        "the stream does not continue where the old one stopped (some data may repeat or be skipped this epoch)",
        then.data.seq_len, now.data.seq_len, now.data.seq_len));
  return out;
}

}  // namespace lh
