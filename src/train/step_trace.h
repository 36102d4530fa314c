// `lighthouse train --trace`: a CUPTI timeline (kernel_trace.h) of chosen training steps, written
// as a Chrome trace per rank and summarized in the log, to see a real run's kernels, idle gaps
// and (data-parallel) how communication overlaps the backward pass.
#pragma once
#include <memory>
#include <string>

#include "lighthouse/kernel_trace.h"

namespace lh {

class StepTrace {
 public:
  // Traces steps first .. first + count - 1 (numbered from 1, as in progress lines) into `path`
  // on rank 0 and `path` with ".rank<r>" before its extension on rank r. An empty path traces
  // nothing. Throws std::runtime_error naming the culprit if the path cannot be written or count
  // or first is below 1; writes no file until the trace (the path check may create missing parent
  // directories, as the write would). A trace that cannot start or be written later throws where
  // failures_fatal (one process: nothing is lost yet), and is only a warning otherwise: on one rank
  // of a data-parallel run, an exception would leave the other ranks waiting in their next
  // collective until it timed out.
  StepTrace(std::string path, int first, int count, int rank, bool failures_fatal = true);
  ~StepTrace();
  void before_step(int step);  // starts the trace at the first traced step
  void after_step(int step);   // stops, writes and logs after the last one
  // At the end of a run: stops, writes and logs a trace still running (a run that ended or
  // stopped inside the range); where the range was never reached, says so.
  void finish();

  static std::string path_for_rank(const std::string& path, int rank);
  int last_step() const { return last_; }  // the last traced step
  bool tracing() const { return tracer_ != nullptr; }  // a trace was started and is not written yet

 private:
  void write();  // stops, writes and logs a running trace; nothing otherwise
  void write_or_fail();  // write(), its errors passed to fail()
  void fail(const std::string& why);  // throws or warns, as failures_fatal says

  std::string path_;
  int first_, last_, rank_;
  bool failures_fatal_;
  bool started_ = false;
  std::unique_ptr<KernelTracer> tracer_;
};

}  // namespace lh
