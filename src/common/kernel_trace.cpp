// The device-agnostic half of kernel tracing: summaries, the Chrome trace file and kernel names
// (the CUPTI capture is in cupti_tracer.cpp).
#include "lighthouse/kernel_trace.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>

namespace lh {

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
  uint64_t busy_ns = 0, begin = order.front()->start_ns, end = order.front()->end_ns, last_end = end;
  uint64_t largest_gap = 0;
  for (const TraceEvent* e : order) {
    if (e->start_ns > end) {  // an idle gap
      busy_ns += end - begin;
      ++s.gaps;
      largest_gap = std::max(largest_gap, e->start_ns - end);
      begin = e->start_ns;
    }
    end = std::max(end, e->end_ns);
    last_end = std::max(last_end, e->end_ns);
  }
  busy_ns += end - begin;
  s.span_ms = double(last_end - order.front()->start_ns) * 1e-6;
  s.busy_ms = double(busy_ns) * 1e-6;
  s.idle_ms = s.span_ms - s.busy_ms;
  s.largest_gap_ms = double(largest_gap) * 1e-6;
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
  return {{"events", s.events},   {"span_ms", s.span_ms}, {"busy_ms", s.busy_ms},
          {"idle_ms", s.idle_ms}, {"gaps", s.gaps},       {"largest_gap_ms", s.largest_gap_ms},
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
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write the trace file " + path);
  f << nlohmann::json{{"traceEvents", list}, {"displayTimeUnit", "ms"}}.dump() << '\n';
  if (!f) throw std::runtime_error("cannot write the trace file " + path);
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
