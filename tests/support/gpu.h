// GPU tests live in the same suite as CPU tests, tagged [gpu]. Without a GPU they call
// LH_SKIP_WITHOUT_GPU(), which records the skip and leaves the test; the test runner then exits
// with 77 when every test it ran was skipped, and CTest (SKIP_RETURN_CODE 77) reports the test as
// skipped, never as passed.
#pragma once
#include <catch2/catch.hpp>

namespace lh::testing {
bool gpu_available();
void record_skip(const char* test_name, const char* reason);
}  // namespace lh::testing

#define LH_SKIP_WITHOUT_GPU()                                                        \
  do {                                                                               \
    if (!::lh::testing::gpu_available()) {                                           \
      ::lh::testing::record_skip(Catch::getResultCapture().getCurrentTestName().c_str(), \
                                 "no CUDA device");                                  \
      return;                                                                        \
    }                                                                                \
  } while (0)
