// The run's metrics file: one JSON object per line (JSONL), appended and flushed per record so a
// crash loses at most the record being written. scripts/plot_metrics.py draws it.
#pragma once
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace lh {

class MetricsLog {
 public:
  // Opens path for appending after dropping records whose "step" is beyond keep_until_step: on a
  // resume they belong to the abandoned tail of the interrupted run; a fresh run passes 0.
  MetricsLog(const std::string& path, int keep_until_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

// "1h02m", "3m05s", "12s": durations for progress lines.
std::string format_duration(double seconds);

}  // namespace lh
