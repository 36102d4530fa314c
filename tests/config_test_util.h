// Helpers shared by tests/test_config.cpp and tests/test_config_io.cpp.
#pragma once
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "lighthouse/config.h"

namespace lh::testing {
using nlohmann::json;

inline json minimal_config() { return {{"data", {{"train", {"data/train_*.bin"}}}}}; }

// Runs `fn`, which must throw ConfigError whose path is `path` and whose message names the path
// and contains `keyword`.
template <typename Fn>
void expect_config_error(Fn&& fn, const std::string& path, const std::string& keyword) {
  try {
    fn();
    FAIL("accepted; expected a ConfigError at " << path);
  } catch (const ConfigError& e) {
    INFO("message: " << e.what());
    CHECK(e.path == path);
    CHECK_THAT(e.what(), Catch::Matchers::Contains(path + ": "));
    CHECK_THAT(e.what(), Catch::Matchers::Contains(keyword));
  }
}

// Writes `text` to a file in a scratch directory and returns its path.
inline std::string write_temp_file(const std::string& name, const std::string& text) {
  const auto dir = std::filesystem::temp_directory_path() / "lh_test_config";
  std::filesystem::create_directories(dir);
  const auto file = (dir / name).string();
  std::ofstream(file) << text;
  return file;
}

}  // namespace lh::testing
