// The GPU clock and power monitor: its summary arithmetic everywhere, NVML readings on the GPU
// machine, and that it stays out of the way where there is no GPU.
#include <catch2/catch.hpp>

#include <chrono>

#include "lighthouse/backend.h"
#include "lighthouse/device.h"
#include "lighthouse/gpu_monitor.h"
#include "support/gpu.h"

TEST_CASE("gpu monitor: the summary of a window of readings", "[cpu]") {
  // t (s), clock sample, energy counter (mJ); the first reading is where the window starts.
  const std::vector<lh::GpuReading> window = {{10.0, lh::ClockSample{1400, true}, 5000000ull},
                                              {10.5, lh::ClockSample{1980, false}, 5300000ull},
                                              {11.0, lh::ClockSample{1600, true}, 5650000ull},
                                              {11.5, lh::ClockSample{1500, true}, 5960000ull},
                                              {12.0, lh::ClockSample{1700, true}, 6300000ull}};
  const lh::GpuActivity a = lh::summarize_gpu_window(window, 700.0, 1980.0);
  CHECK(a.seconds == Approx(2.0));
  CHECK(a.samples == 4);  // the window's start belongs to the previous window
  CHECK(a.mean_sm_clock_mhz == Approx((1980.0 + 1600 + 1500 + 1700) / 4));
  CHECK(a.min_sm_clock_mhz == 1500.0);
  CHECK(a.power_capped_fraction == Approx(0.75));
  REQUIRE(a.energy_j.has_value());
  CHECK(*a.energy_j == Approx(1300.0));
  CHECK(*a.mean_power_w == Approx(650.0));
  const nlohmann::json j = lh::to_json(a);
  CHECK(j.at("sm_clock_mhz").get<double>() == Approx(a.mean_sm_clock_mhz));
  CHECK(j.at("gpu_power_w").get<double>() == Approx(650.0));
  CHECK(lh::describe(a).find("1500") != std::string::npos);
  CHECK(lh::describe(a).find("650 W of 700 W") != std::string::npos);

  SECTION("failed reads are left out, not taken for a 0 MHz clock or a reset energy counter") {
    std::vector<lh::GpuReading> gaps = window;
    gaps[2].clock.reset();
    gaps[4].energy_mj.reset();  // the window's last energy reading failed
    const lh::GpuActivity b = lh::summarize_gpu_window(gaps, 700.0, 1980.0);
    CHECK(b.samples == 3);
    CHECK(b.min_sm_clock_mhz == 1500.0);
    CHECK(b.mean_sm_clock_mhz == Approx((1980.0 + 1500 + 1700) / 3));
    REQUIRE(b.mean_power_w.has_value());
    CHECK(*b.energy_j == Approx(960.0));  // 10.0 s .. 11.5 s, the last counter reading
    CHECK(*b.mean_power_w == Approx(640.0));
    CHECK(b.seconds == Approx(2.0));

    for (lh::GpuReading& r : gaps) r.energy_mj.reset();  // a device with no energy counter
    const lh::GpuActivity c = lh::summarize_gpu_window(gaps, 700.0, 1980.0);
    CHECK_FALSE(c.energy_j.has_value());
    CHECK_FALSE(c.mean_power_w.has_value());
    CHECK_FALSE(lh::to_json(c).contains("gpu_power_w"));
    CHECK(lh::describe(c).find("power unknown") != std::string::npos);
    for (lh::GpuReading& r : gaps) r.clock.reset();  // every clock read failed: no clock, not 0 MHz
    const lh::GpuActivity d = lh::summarize_gpu_window(gaps, 700.0, 1980.0);
    CHECK(d.samples == 0);
    CHECK_FALSE(lh::to_json(d).contains("sm_clock_mhz"));
    CHECK(lh::describe(d).find("no SM clock readings") != std::string::npos);
  }
  SECTION("a window without a reading beyond its start, or none at all") {
    for (const std::vector<lh::GpuReading>& w : {std::vector<lh::GpuReading>{}, {window.front()}}) {
      const lh::GpuActivity none = lh::summarize_gpu_window(w, 700.0, 1980.0);
      CHECK(none.samples == 0);
      CHECK(none.seconds == 0.0);
      CHECK_FALSE(none.mean_power_w.has_value());
      CHECK(none.mean_sm_clock_mhz == 0.0);
    }
  }
}

TEST_CASE("gpu monitor: without a GPU it is unavailable and start/stop do nothing", "[cpu]") {
  lh::GpuMonitor m;
  if (lh::cuda_device_count() > 0) {
    // Reported as skipped, not passed: this case checks nothing where there is a GPU.
    lh::testing::record_skip(Catch::getResultCapture().getCurrentTestName().c_str(),
                             "a GPU is present: the [gpu] case covers the monitor");
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
  REQUIRE(a->mean_power_w.has_value());  // H100 and H200 have an energy counter
  CHECK(*a->energy_j > 0);
  CHECK(*a->mean_power_w > 0);
  CHECK(*a->mean_power_w < 2 * a->power_limit_w);
  const std::optional<lh::GpuActivity> b = m.stop();  // the lap restarted it
  REQUIRE(b.has_value());
  CHECK(b->seconds < a->seconds);
}
