// A fresh directory under the system temp dir, removed (with its contents) when the test ends.
#pragma once
#include <atomic>
#include <filesystem>
#include <string>

#include <unistd.h>

namespace lh::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& tag = "lighthouse-test") {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace lh::testing
