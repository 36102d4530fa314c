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

// A run that starts (fresh, or --resume without a checkpoint) writes config.json and metrics.jsonl
// into logging.dir, replacing what is there. Throws ConfigError (logging.dir) where that would
// replace files no run wrote (a user's own config.json), and, for a fresh run, files of an earlier
// run too (--resume restarts that run).
void check_run_files(const std::string& run_dir, bool resuming);

// A run whose last phase is dense but whose training.steps end before that phase starts (a
// phased config cut short) would never train dense, and its export would not be the dense model the
// config plans: the problem and what to do instead (said of training.steps), or "". A fresh run
// stops on it (ConfigError on training.steps); a resume (perhaps of a run started before this
// rule) is warned.
std::string missing_dense_tail(const Config& cfg);

// Attention phases that do not do what they say: one that starts after training.steps (but the
// dense last phase that missing_dense_tail speaks of), a Lighthouse phase whose dense_layers lists
// every layer. One warning each.
std::vector<std::string> idle_phase_warnings(const Config& cfg);

}  // namespace lh
