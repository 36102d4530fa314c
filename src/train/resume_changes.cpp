#include "train/resume_changes.h"

#include <fmt/format.h>

#include "lighthouse/schedule.h"

namespace lh {

std::vector<std::string> resume_changes(const Config& then, const Config& now, int next_step) {
  std::vector<std::string> out;
  if (next_step < now.training.steps) {
    // The schedule is a function of training.steps: extending a run re-shapes its decay.
    const double was = learning_rate(then.schedule, then.optimizer.lr, next_step, then.training.steps);
    const double is = learning_rate(now.schedule, now.optimizer.lr, next_step, now.training.steps);
    if (was != is)
      out.push_back(fmt::format(
          "the learning-rate schedule differs from the checkpoint's (training.steps {} -> {}, schedule.decay {} -> "
          "{}, optimizer.lr {} -> {}): step {} runs at lr {:.4g}, where the checkpoint's schedule had {:.4g}",
          then.training.steps, now.training.steps, then.schedule.decay, now.schedule.decay, then.optimizer.lr,
          now.optimizer.lr, next_step + 1, is, was));
  }
  if (then.data.seq_len != now.data.seq_len)
    out.push_back(fmt::format(
        "data.seq_len {} -> {}: the data position is kept as a window index over the new {}-token windows, so "
        "the stream does not continue where the old one stopped (some data may repeat or be skipped this epoch)",
        then.data.seq_len, now.data.seq_len, now.data.seq_len));
  return out;
}

}  // namespace lh
