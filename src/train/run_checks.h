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

// logging.dir is created at the first step: throws ConfigError (logging.dir) where it cannot be
// (a file on the way, a parent that is not writable).
void check_run_dir_usable(const std::string& run_dir);

// Attention phases that do not do what they say: one that starts after training.steps, a
// Lighthouse phase whose dense_layers lists every layer. One warning each.
std::vector<std::string> idle_phase_warnings(const Config& cfg);

}  // namespace lh
