// The GPU clock and power monitor: its summary arithmetic everywhere, NVML readings on the GPU
// machine, and that it stays out of the way where there is no GPU.
#include <catch2/catch.hpp>

#include <chrono>

#include "lighthouse/backend.h"
#include "lighthouse/device.h"
#include "lighthouse/gpu_monitor.h"
#include "support/gpu.h"

TEST_CASE("gpu monitor: the summary of clock samples and the energy counter", "[cpu]") {
  const std::vector<lh::ClockSample> samples = {{1980, false}, {1600, true}, {1500, true}, {1700, true}};
  const lh::GpuActivity a = lh::summarize_gpu_activity(samples, 2.0, 1300.0, 700.0, 1980.0);
  CHECK(a.samples == 4);
  CHECK(a.mean_sm_clock_mhz == Approx((1980.0 + 1600 + 1500 + 1700) / 4));
  CHECK(a.min_sm_clock_mhz == 1500.0);
  CHECK(a.power_capped_fraction == Approx(0.75));
  CHECK(a.mean_power_w == Approx(650.0));
  const nlohmann::json j = lh::to_json(a);
  CHECK(j.at("sm_clock_mhz").get<double>() == Approx(a.mean_sm_clock_mhz));
  CHECK(j.at("gpu_power_w").get<double>() == Approx(650.0));
  CHECK(lh::describe(a).find("1500") != std::string::npos);

  const lh::GpuActivity none = lh::summarize_gpu_activity({}, 0.0, 0.0, 700.0, 1980.0);
  CHECK(none.samples == 0);
  CHECK(none.mean_power_w == 0.0);  // no division by a zero duration
  CHECK(none.mean_sm_clock_mhz == 0.0);
}

TEST_CASE("gpu monitor: without a GPU it is unavailable and start/stop do nothing", "[cpu]") {
  lh::GpuMonitor m;
  if (lh::cuda_device_count() > 0) {
    SUCCEED("a GPU is present: the [gpu] case below covers the monitor");
    return;
  }
  CHECK_FALSE(m.available());
  m.start();
  CHECK_FALSE(m.stop().has_value());
  CHECK_FALSE(m.lap().has_value());
}

TEST_CASE("gpu monitor: reads the clock, power and energy while GEMMs run", "[gpu]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  lh::GpuMonitor m(/*sample_ms=*/5);
  REQUIRE(m.available());  // the GPU machine has the driver's NVML
  const int n = 4096;
  lh::Buffer x = gpu->allocate(lh::DType::BF16, size_t(n) * n), w = gpu->allocate(lh::DType::BF16, size_t(n) * n),
             out = gpu->allocate(lh::DType::BF16, size_t(n) * n);
  CHECK_FALSE(m.stop().has_value());  // not started yet
  m.start();
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(300)) {
    for (int i = 0; i < 20; ++i) gpu->matmul_forward(out.view(), x.view(), w.view(), n, n, n, n);
    gpu->synchronize();
  }
  const std::optional<lh::GpuActivity> a = m.lap();
  REQUIRE(a.has_value());
  CHECK(a->seconds >= 0.3 - 0.05);  // a lap ends at the latest reading, at most one period (5 ms) back
  CHECK(a->samples >= 10);
  CHECK(a->max_sm_clock_mhz > 0);
  CHECK(a->mean_sm_clock_mhz > 0);
  CHECK(a->mean_sm_clock_mhz <= a->max_sm_clock_mhz);
  CHECK(a->min_sm_clock_mhz <= a->mean_sm_clock_mhz);
  CHECK(a->power_limit_w > 0);
  CHECK(a->energy_j > 0);
  CHECK(a->mean_power_w > 0);
  CHECK(a->mean_power_w < 2 * a->power_limit_w);
  const std::optional<lh::GpuActivity> b = m.stop();  // the lap restarted it
  REQUIRE(b.has_value());
  CHECK(b->seconds < a->seconds);
}
