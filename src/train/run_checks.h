// Checks of a run's settings against its files, made before the first step (dry runs included),
// so that a mistake stops the run at once and names its config key, rather than failing later with
// a raw filesystem error or training on the wrong thing.
#pragma once
#include <string>
#include <vector>

#include "lighthouse/config.h"

namespace lh {

// Validation that scores shards the model trains on measures memorisation, not generalisation:
// throws ConfigError (data.val) naming a shard found in both resolved lists.
void check_disjoint(const std::vector<std::string>& train, const std::vector<std::string>& val);
// Without data.val nothing above can object, but shards named val_*.bin in data.train (a whole
// `lighthouse data` directory) are still probably not meant to be trained on: a warning, or "".
std::string val_named_train_shards(const std::vector<std::string>& train);

// logging.dir is created at the first step: throws ConfigError (logging.dir) where it cannot be
// (a file on the way, a parent that is not writable).
void check_run_dir_usable(const std::string& run_dir);

// A new run (no --resume) writes config.json and metrics.jsonl into logging.dir: throws ConfigError
// (logging.dir) where either is there already (an earlier run's, or a user's own file), rather
// than replacing it.
void check_no_run_files(const std::string& run_dir);

// Attention phases that do not do what they say: one that starts after training.steps, a
// Lighthouse phase whose dense_layers lists every layer. One warning each.
std::vector<std::string> idle_phase_warnings(const Config& cfg);

}  // namespace lh
