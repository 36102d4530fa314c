// Runs the built `lighthouse` binary (LH_BINARY) as a user would, capturing its exit code and its
// stdout and stderr together.
#pragma once
#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

namespace lh::testing {

struct CliResult {
  int code;            // exit status; -1 when killed by a signal
  std::string output;  // stdout and stderr
  double seconds;
};

// `args` are appended to the binary's path as shell words; runs in `cwd` when given. Uses no
// Catch2 assertions (which are not thread-safe): a failed start is code -2 with the reason as output.
inline CliResult run_lighthouse_unchecked(const std::string& args, const std::filesystem::path& cwd = {}) {
  const auto t0 = std::chrono::steady_clock::now();
  // A hung binary fails its test (exit 124) rather than hanging the suite.
  std::string cmd = "timeout -k 10 600 '" + std::string(LH_BINARY) + "' " + args + " 2>&1";
  if (!cwd.empty()) cmd = "cd '" + cwd.string() + "' && " + cmd;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return {-2, "popen failed", 0.0};
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()};
}

inline CliResult run_lighthouse(const std::string& args, const std::filesystem::path& cwd = {}) {
  CliResult r = run_lighthouse_unchecked(args, cwd);
  REQUIRE(r.code != -2);  // the binary started
  return r;
}

}  // namespace lh::testing
