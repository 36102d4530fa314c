#include "lighthouse/schedule.h"

#include <algorithm>
#include <cmath>

namespace lh {

double learning_rate(const ScheduleConfig& s, double peak, int step, int total_steps) {
  if (step < s.warmup_steps) return peak * double(step + 1) / double(s.warmup_steps);
  const double min_lr = std::min(s.min_lr, peak);
  if (s.decay == "constant") return peak;
  if (s.decay == "wsd") {
    const double decay_steps = std::max(1.0, std::round(s.decay_fraction * total_steps));
    const double decay_start = total_steps - decay_steps;
    if (step < decay_start) return peak;
    const double progress = std::min(1.0, (step - decay_start + 1) / decay_steps);
    return peak - (peak - min_lr) * progress;
  }
  const int span = std::max(1, total_steps - s.warmup_steps - 1);
  const double progress = std::min(1.0, double(step - s.warmup_steps) / span);
  if (s.decay == "linear") return peak - (peak - min_lr) * progress;
  // cosine
  return min_lr + (peak - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace lh
