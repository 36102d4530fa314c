// Learning-rate schedules: linear warm-up, then constant, cosine, linear or warmup-stable-decay
// (WSD: constant until the last decay_fraction of the run, then linear) down to min_lr.
#pragma once
#include "lighthouse/config.h"

namespace lh {
// The learning rate of 0-based optimizer step `step` out of `total_steps`.
double learning_rate(const ScheduleConfig& schedule, double peak_lr, int step, int total_steps);
}  // namespace lh
