#include "train/metrics.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <spdlog/spdlog.h>

#include "lighthouse/checkpoint_dir.h"

namespace lh {

MetricsLog::MetricsLog(const std::string& path, int keep_until_step) : path_(path) {
  if (std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::ostringstream kept;
    std::string line;
    int torn = 0;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      // A line that is not a JSON object is a record torn by a crash (or a full disk) mid-write:
      // kept, it would break every reader of the file after the records appended to it.
      if (!j.is_object()) {
        torn += line.empty() ? 0 : 1;
        continue;
      }
      if (j.contains("step") && j["step"].is_number() && j["step"].get<int>() > keep_until_step) continue;
      kept << line << '\n';
    }
    if (torn > 0)
      spdlog::warn("{}: dropped {} line{} that {} not a JSON record (torn by a crash mid-write?)", path, torn,
                   torn == 1 ? "" : "s", torn == 1 ? "is" : "are");
    ckpt::write_file_atomic(path, kept.str());
  }
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) throw std::runtime_error(path + ": cannot open metrics file: " + std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const nlohmann::json& record) {
  const std::string line = record.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    throw std::runtime_error(path_ + ": cannot write metrics: " + std::strerror(errno));
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e9) return "?";
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

}  // namespace lh
