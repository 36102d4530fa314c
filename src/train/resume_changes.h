// What a resume changes about a run: a config may legitimately differ from the checkpoint's (that
// is how a run is extended or moved to a longer context), but some changes alter what the next
// steps do in ways a user should hear about rather than discover in the loss curve.
#pragma once
#include <string>
#include <vector>

#include "lighthouse/config.h"

namespace lh {

// One warning per consequential difference between the checkpoint's config (`then`) and the
// run's (`now`) for a run resuming at 0-based step `next_step`: the learning rate the schedule
// gives that step, and the data windows' length (their positions are counted in windows).
std::vector<std::string> resume_changes(const Config& then, const Config& now, int next_step);

}  // namespace lh
