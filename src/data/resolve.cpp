// Shard spec resolution: files, directories and glob patterns -> a sorted list of shard paths.
#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "lighthouse/data/shard.h"

namespace fs = std::filesystem;

namespace lh::data {
namespace {

constexpr const char* kShardExtension = ".bin";

std::vector<std::string> shards_in_directory(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().extension() == kShardExtension)
      out.push_back(entry.path().string());
  return out;
}

std::vector<std::string> glob_matches(const std::string& pattern) {
  glob_t g{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; ++i)
      if (fs::is_regular_file(g.gl_pathv[i])) out.emplace_back(g.gl_pathv[i]);
  ::globfree(&g);
  if (rc != 0 && rc != GLOB_NOMATCH)
    throw std::runtime_error(fmt::format("{}: glob failed (code {})", pattern, rc));
  return out;
}

}  // namespace

std::vector<std::string> resolve_shards(const std::vector<std::string>& specs) {
  std::vector<std::string> all;
  for (const auto& spec : specs) {
    std::vector<std::string> found;
    if (fs::is_directory(spec)) {
      found = shards_in_directory(spec);
      if (found.empty())
        throw std::runtime_error(fmt::format("{}: directory contains no *{} shards", spec, kShardExtension));
    } else if (fs::is_regular_file(spec)) {
      found.push_back(spec);
    } else {
      found = glob_matches(spec);
      if (found.empty())
        throw std::runtime_error(fmt::format("{}: no shard file matches this path or pattern", spec));
    }
    // Normalised so that "d/a.bin" and "./d/a.bin" deduplicate.
    for (const auto& f : found) all.push_back(fs::path(f).lexically_normal().string());
  }
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  std::set<std::string> dirs;
  for (const auto& f : all) dirs.insert(fs::path(f).parent_path().string());
  for (const auto& dir : dirs)
    if (fs::exists(fs::path(dir.empty() ? "." : dir) / kPublishMarker))
      throw std::runtime_error(fmt::format(
          "{}: a data build is publishing its shards here, or was killed while it did ({} is still there): "
          "its shards may mix two builds; wait for it, or run the build again",
          dir.empty() ? "." : dir, kPublishMarker));
  return all;
}

}  // namespace lh::data
