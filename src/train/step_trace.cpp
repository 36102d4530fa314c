#include "train/step_trace.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "lighthouse/checkpoint_dir.h"

namespace lh {

std::string StepTrace::path_for_rank(const std::string& path, int rank) {
  if (rank == 0) return path;
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + ".rank" + std::to_string(rank) + p.extension().string())).string();
}

StepTrace::StepTrace(std::string path, int first, int count, int rank, bool failures_fatal)
    : path_(path.empty() ? path : path_for_rank(path, rank)), first_(first), last_(first), rank_(rank),
      failures_fatal_(failures_fatal) {
  if (path_.empty()) return;
  if (first < 1) throw std::runtime_error("--trace-from must be a step number >= 1, got " + std::to_string(first));
  if (count < 1) throw std::runtime_error("--trace-steps must be >= 1, got " + std::to_string(count));
  last_ = int(std::min<long long>(INT_MAX, (long long)first + count - 1));
  check_trace_path(path_);  // found out now, not after the run has reached the traced steps
}

// A run that fails (an exception unwinds train()) still writes what it traced; the "never
// reached" warning belongs to runs that end normally (finish()).
StepTrace::~StepTrace() {
  try {
    write();
  } catch (const std::exception& e) {
    spdlog::warn("trace: {}", e.what());
  }
}

void StepTrace::before_step(int step) {
  if (path_.empty() || step != first_) return;
  started_ = true;
  std::string why;
  tracer_ = KernelTracer::start(&why);
  if (!tracer_) fail("--trace: " + why);
}

void StepTrace::after_step(int step) {
  if (tracer_ && step == last_) write_or_fail();
}

void StepTrace::write_or_fail() {
  try {
    write();
  } catch (const std::exception& e) {
    fail(std::string("--trace: ") + e.what());
  }
}

void StepTrace::fail(const std::string& why) {
  if (failures_fatal_) throw std::runtime_error(why);
  spdlog::warn("{} (rank {}: training goes on without this trace)", why, rank_);
}

void StepTrace::finish() {
  if (!path_.empty() && !started_ && rank_ == 0)  // a resume past the range, or a run that ends before it
    spdlog::warn("--trace: step {} was not run by this process; no trace written", first_);
  write_or_fail();
}

void StepTrace::write() {
  if (!tracer_) return;
  const std::vector<TraceEvent> events = tracer_->stop();
  const std::string incomplete = tracer_->incomplete();
  tracer_.reset();
  write_chrome_trace(events, path_);
  // What an earlier run killed while writing this same trace left: its writer's pid is gone, and
  // an hour's age keeps a live writer on another machine of a shared filesystem safe.
  const std::filesystem::path written(path_);
  ckpt::remove_stale_temporaries(written.parent_path().empty() ? "." : written.parent_path().string(),
                                 {written.filename().string()}, std::chrono::hours(1));
  if (!incomplete.empty()) spdlog::warn("trace {} may be incomplete: {}", path_, incomplete);
  const std::string summary = describe(summarize_trace(events));
  if (rank_ == 0)
    spdlog::info("trace of steps {}-{} written to {}: {}", first_, last_, path_, summary.substr(0, summary.size() - 1));
}

}  // namespace lh
