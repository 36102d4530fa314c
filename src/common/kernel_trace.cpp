// The device-agnostic half of kernel tracing: summaries, the Chrome trace file and kernel names
// (the CUPTI capture is in cupti_tracer.cpp).
#include "lighthouse/kernel_trace.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>

#include "lighthouse/checkpoint_dir.h"

namespace lh {

namespace {

[[noreturn]] void throw_unwritable(const std::string& path, const std::string& why) {
  throw std::runtime_error("cannot write the trace file " + path + ": " + why);
}

bool is_comm(const TraceEvent& e) { return e.name.compare(0, 4, "nccl") == 0; }

// The time the `comm` events overlap the union of the `work` events, both sorted by start.
uint64_t overlap_ns(const std::vector<const TraceEvent*>& comm, const std::vector<const TraceEvent*>& work) {
  std::vector<std::pair<uint64_t, uint64_t>> merged;  // the union of work, as disjoint intervals
  for (const TraceEvent* e : work) {
    if (!merged.empty() && e->start_ns <= merged.back().second)
      merged.back().second = std::max(merged.back().second, e->end_ns);
    else
      merged.emplace_back(e->start_ns, e->end_ns);
  }
  uint64_t total = 0;
  for (const TraceEvent* c : comm) {
    auto it = std::upper_bound(merged.begin(), merged.end(), std::make_pair(c->start_ns, UINT64_MAX));
    if (it != merged.begin()) --it;
    for (; it != merged.end() && it->first < c->end_ns; ++it) {
      const uint64_t lo = std::max(it->first, c->start_ns), hi = std::min(it->second, c->end_ns);
      if (hi > lo) total += hi - lo;
    }
  }
  return total;
}

}  // namespace

TraceSummary summarize_trace(const std::vector<TraceEvent>& events) {
  TraceSummary s;
  s.events = int(events.size());
  if (events.empty()) return s;
  std::vector<const TraceEvent*> order;
  for (const TraceEvent& e : events) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const TraceEvent* a, const TraceEvent* b) {
    return a->start_ns < b->start_ns;
  });
  // Sweep in start order, merging overlapping intervals into busy stretches.
  const uint64_t t0 = order.front()->start_ns;
  uint64_t busy_ns = 0, begin = t0, end = order.front()->end_ns, last_end = end;
  const TraceEvent* ended_last = order.front();
  for (const TraceEvent* e : order) {
    if (e->start_ns > end) {  // an idle gap
      busy_ns += end - begin;
      ++s.gaps;
      s.longest_gaps.push_back({double(end - t0) * 1e-6, double(e->start_ns - end) * 1e-6, ended_last->name, e->name});
      begin = e->start_ns;
    }
    if (e->end_ns >= end) end = e->end_ns, ended_last = e;
    last_end = std::max(last_end, e->end_ns);
  }
  busy_ns += end - begin;
  s.span_ms = double(last_end - t0) * 1e-6;
  s.busy_ms = double(busy_ns) * 1e-6;
  s.idle_ms = s.span_ms - s.busy_ms;
  std::stable_sort(s.longest_gaps.begin(), s.longest_gaps.end(),
                   [](const TraceSummary::Gap& a, const TraceSummary::Gap& b) { return a.ms > b.ms; });
  if (s.longest_gaps.size() > size_t(TraceSummary::kListedGaps)) s.longest_gaps.resize(TraceSummary::kListedGaps);
  s.largest_gap_ms = s.longest_gaps.empty() ? 0.0 : s.longest_gaps.front().ms;

  std::vector<const TraceEvent*> comm, work;
  for (const TraceEvent* e : order) (is_comm(*e) ? comm : work).push_back(e);
  for (const TraceEvent* c : comm) s.comm_ms += double(c->end_ns - c->start_ns) * 1e-6;
  s.comm_beside_work_ms = double(overlap_ns(comm, work)) * 1e-6;

  std::map<std::string, double> by_name;
  for (const TraceEvent& e : events) by_name[e.name] += double(e.end_ns - e.start_ns) * 1e-6;
  s.ms_by_name.assign(by_name.begin(), by_name.end());
  std::stable_sort(s.ms_by_name.begin(), s.ms_by_name.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return s;
}

std::string describe(const TraceSummary& s, int top) {
  char line[512];
  std::snprintf(line, sizeof line,
                "%d GPU events over %.3f ms: busy %.3f ms (%.1f%%), idle %.3f ms in %d gaps (largest %.3f ms)\n",
                s.events, s.span_ms, s.busy_ms, s.span_ms > 0 ? 100.0 * s.busy_ms / s.span_ms : 0.0, s.idle_ms,
                s.gaps, s.largest_gap_ms);
  std::string out = line;
  if (s.comm_ms > 0) {
    std::snprintf(line, sizeof line, "  communication (NCCL) %.3f ms, %.3f ms of it beside other work\n", s.comm_ms,
                  s.comm_beside_work_ms);
    out += line;
  }
  for (const TraceSummary::Gap& g : s.longest_gaps) {
    std::snprintf(line, sizeof line, "  gap %.3f ms at %.3f ms: after %.60s, before %.60s\n", g.ms, g.at_ms,
                  g.after.c_str(), g.before.c_str());
    out += line;
  }
  for (int i = 0; i < int(s.ms_by_name.size()) && i < top; ++i) {
    const auto& [name, ms] = s.ms_by_name[size_t(i)];
    std::snprintf(line, sizeof line, "  %10.3f ms  %5.1f%%  %s\n", ms, s.span_ms > 0 ? 100.0 * ms / s.span_ms : 0.0,
                  name.c_str());
    out += line;
  }
  return out;
}

nlohmann::json to_json(const TraceSummary& s) {
  nlohmann::json by_name = nlohmann::json::array();
  for (const auto& [name, ms] : s.ms_by_name) by_name.push_back({{"name", name}, {"ms", ms}});
  nlohmann::json gaps = nlohmann::json::array();
  for (const TraceSummary::Gap& g : s.longest_gaps)
    gaps.push_back({{"at_ms", g.at_ms}, {"ms", g.ms}, {"after", g.after}, {"before", g.before}});
  return {{"events", s.events},
          {"span_ms", s.span_ms},
          {"busy_ms", s.busy_ms},
          {"idle_ms", s.idle_ms},
          {"gaps", s.gaps},
          {"largest_gap_ms", s.largest_gap_ms},
          {"longest_gaps", gaps},
          {"comm_ms", s.comm_ms},
          {"comm_beside_work_ms", s.comm_beside_work_ms},
          {"ms_by_name", by_name}};
}

void write_chrome_trace(const std::vector<TraceEvent>& events, const std::string& path) {
  uint64_t t0 = UINT64_MAX;
  for (const TraceEvent& e : events) t0 = std::min(t0, e.start_ns);
  nlohmann::json list = nlohmann::json::array();
  for (const TraceEvent& e : events) {
    const char* cat = e.kind == TraceEvent::Kind::kKernel   ? "kernel"
                      : e.kind == TraceEvent::Kind::kMemcpy ? "memcpy"
                                                            : "memset";
    list.push_back({{"name", e.name},
                    {"cat", cat},
                    {"ph", "X"},
                    {"pid", 0},
                    {"tid", e.stream},
                    {"ts", double(e.start_ns - t0) * 1e-3},
                    {"dur", double(e.end_ns - e.start_ns) * 1e-3}});
  }
  try {  // a reader (or a run killed mid-write) never sees a torn file
    ckpt::write_file_atomic(path, nlohmann::json{{"traceEvents", list}, {"displayTimeUnit", "ms"}}.dump() + "\n");
  } catch (const std::exception& e) {
    throw_unwritable(path, e.what());
  }
}

void check_trace_device(bool on_cuda, const std::string& flag, const std::string& what) {
  if (!on_cuda) throw std::runtime_error(flag + " records GPU work: it needs " + what);
}

void check_trace_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw_unwritable(path, "it is a directory");
  const fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
  fs::create_directories(parent, ec);  // as the write would
  if (ec) throw_unwritable(path, "cannot create " + parent.string() + ": " + ec.message());
  // A probe file beside it, removed at once: an existing trace of an earlier run stays untouched
  // until the new one replaces it.
  const std::string probe = (parent / (".probe-" + std::to_string(::getpid()) + "-" + fs::path(path).filename().string())).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) throw_unwritable(path, std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

std::string short_kernel_name(const char* name) {
  if (!name) return "?";
  std::string s = name;
  int status = 0;
  if (char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status)) {
    if (status == 0) s = d;
    std::free(d);
  }
  const std::string anon = "(anonymous namespace)::";
  for (size_t p; (p = s.find(anon)) != std::string::npos;) s.erase(p, anon.size());
  // Drop the parameter list (the first '(' outside template arguments) and template arguments.
  std::string out;
  int depth = 0;
  for (char c : s) {
    if (c == '(' && depth == 0 && !out.empty()) break;
    if (c == '<') ++depth;
    if (depth == 0) out += c;
    if (c == '>' && depth > 0) --depth;
  }
  if (out.compare(0, 5, "void ") == 0) out.erase(0, 5);  // the return type
  return out.empty() ? std::string(name) : out;
}

}  // namespace lh
