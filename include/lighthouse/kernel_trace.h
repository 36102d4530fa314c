// A timeline of the GPU work of part of a run: every kernel, copy and memset with its start and
// end on the device, recorded through CUPTI's activity API (loaded at run time, like NVML: the
// binary must start where there is none). It answers what per-kernel benchmarks cannot: how long
// the GPU sits idle between kernels in a real step, and which kernels a step's time goes to at the
// clock the step really runs at. Written as a Chrome trace (chrome://tracing, ui.perfetto.dev).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lh {

struct TraceEvent {
  enum class Kind { kKernel, kMemcpy, kMemset };
  Kind kind = Kind::kKernel;
  std::string name;           // kernels: demangled and shortened (short_kernel_name)
  uint64_t start_ns = 0, end_ns = 0;  // device timestamps
  uint32_t stream = 0;
};

struct TraceSummary {
  int events = 0;
  double span_ms = 0;         // first start to last end
  double busy_ms = 0;         // time with at least one event running (overlaps counted once)
  double idle_ms = 0;         // span_ms - busy_ms
  int gaps = 0;               // idle stretches between events
  double largest_gap_ms = 0;
  // The longest idle stretches, longest first (at most kListedGaps), with the events around them.
  struct Gap {
    double at_ms = 0, ms = 0;  // start, from the first event's start; length
    std::string after, before;  // the event that ended last before it, the one that starts it
  };
  static constexpr int kListedGaps = 5;
  std::vector<Gap> longest_gaps;
  // Communication (NCCL's kernels, "nccl..."): their time, and how much of it ran beside other
  // work, i.e. overlapped with some non-communication event.
  double comm_ms = 0, comm_beside_work_ms = 0;
  // Time per name (summed over its events, overlaps included), largest first.
  std::vector<std::pair<std::string, double>> ms_by_name;
};

TraceSummary summarize_trace(const std::vector<TraceEvent>& events);
// The summary as text: busy fraction, communication, the longest gaps and the `top` names with
// the most time.
std::string describe(const TraceSummary& s, int top = 12);
nlohmann::json to_json(const TraceSummary& s);
// Chrome trace event format ("X" events, microseconds, one row per stream), written atomically
// (a sibling temporary file renamed over `path`; missing parent directories are created); throws
// std::runtime_error naming the path if it cannot be written.
void write_chrome_trace(const std::vector<TraceEvent>& events, const std::string& path);
// Throws as write_chrome_trace would if the file could not be written there, without touching
// `path` itself: for callers to find a bad path before the work they trace, not after.
void check_trace_path(const std::string& path);
// Throws "<flag> records GPU work: it needs <what>" unless the work runs on a CUDA device.
void check_trace_device(bool on_cuda, const std::string& flag, const std::string& what);
// A readable kernel name: demangled, return type, parameter list and template arguments dropped
// ("void lh::cuda::(anonymous namespace)::ce_backward<true>(...)" -> "lh::cuda::ce_backward").
std::string short_kernel_name(const char* name);

// Records the GPU work of every stream from start() to stop(). One at a time per process.
class KernelTracer {
 public:
  // Null, with the reason in *why_not, where CUPTI cannot be loaded or refuses (no GPU).
  static std::unique_ptr<KernelTracer> start(std::string* why_not);
  ~KernelTracer();
  KernelTracer(const KernelTracer&) = delete;
  KernelTracer& operator=(const KernelTracer&) = delete;
  // Waits for the device, flushes CUPTI's buffers and returns the events in start order.
  std::vector<TraceEvent> stop();
  // After stop(): why the events may be incomplete (records CUPTI dropped or left unfinished, a
  // failed flush), or empty if they are not.
  std::string incomplete() const;

 private:
  KernelTracer() = default;
  bool stopped_ = false;
  size_t lost_ = 0;
  std::string problem_;
};

}  // namespace lh
