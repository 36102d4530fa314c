// Catch2 runner with skip accounting (see tests/support/gpu.h).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <set>
#include <string>

#include "lighthouse/device.h"
#include "support/gpu.h"

namespace {
std::set<std::string> g_started;
std::set<std::string> g_skipped;

struct SkipCounter : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseStarting(const Catch::TestCaseInfo& info) override { g_started.insert(info.name); }
};
}  // namespace
CATCH_REGISTER_LISTENER(SkipCounter)

namespace lh::testing {
bool gpu_available() { return lh::cuda_device_count() > 0; }
void record_skip(const char* test_name, const char* reason) {
  std::printf("SKIPPED: %s (%s)\n", test_name, reason);
  g_skipped.insert(test_name);
}
}  // namespace lh::testing

int main(int argc, char* argv[]) {
  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  const int failed = session.run();
  if (failed != 0) return failed;
  if (!g_skipped.empty()) {
    std::printf("%zu test case(s) skipped (SKIPPED lines above say why)\n", g_skipped.size());
    if (g_skipped.size() == g_started.size()) return 77;  // nothing but skips ran
  }
  return 0;
}
