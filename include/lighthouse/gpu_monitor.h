// What a GPU's clock and power did while work ran: an H100 or H200 at its 700 W limit holds its
// SM clock well below the 1,980 MHz boost during training, so a step time means little without
// the clock it ran at. Read through NVML, which is loaded at run time: machines without the
// NVIDIA driver have none, and the binary must start there all the same.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lh {

// One reading of the SM clock, and whether the driver was holding it down for power (the software
// power cap or the hardware power brake) at that moment.
struct ClockSample {
  double sm_clock_mhz = 0;
  bool power_capped = false;
};

struct GpuActivity {
  double seconds = 0;         // wall time covered
  double energy_j = 0;        // the driver's energy counter over that time
  double mean_power_w = 0;    // energy_j / seconds: coarse under a few seconds (654-757 W seen for
                              // the same 0.8 s of work at a 700 W limit)
  double power_limit_w = 0;   // the enforced power limit
  double max_sm_clock_mhz = 0;  // the device's highest SM clock (boost)
  double mean_sm_clock_mhz = 0, min_sm_clock_mhz = 0;  // over the samples
  double power_capped_fraction = 0;  // of the samples
  int samples = 0;
};

// The summary of one stretch's readings; samples may be empty (then the clock fields stay 0).
GpuActivity summarize_gpu_activity(const std::vector<ClockSample>& samples, double seconds, double energy_j,
                                   double power_limit_w, double max_sm_clock_mhz);
// {"gpu_seconds", "gpu_energy_j", "gpu_power_w", "gpu_power_limit_w", "sm_clock_mhz", ...}.
nlohmann::json to_json(const GpuActivity& a);
// "1620 MHz mean SM clock (min 1560, boost 1980), 688 W of 700 (power-capped 95% of the time)".
std::string describe(const GpuActivity& a);

// Samples the calling thread's current CUDA device (as selected when the monitor is made) every
// sample_ms from a background thread, between start() and stop(); every NVML read happens there.
// Without NVML or a GPU it is unavailable: start() does nothing, stop() and lap() return nothing.
class GpuMonitor {
 public:
  explicit GpuMonitor(double sample_ms = 20);
  ~GpuMonitor();
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  bool available() const { return impl_ != nullptr; }
  void start();
  // Stops sampling (after one last reading): what happened since the start or the last lap.
  std::optional<GpuActivity> stop();
  // What happened since the start or the last lap, up to the latest reading, while sampling goes
  // on; consecutive laps neither overlap nor leave gaps. Never waits for NVML. Nothing when no
  // reading came since the last lap (that stretch then counts in the next one).
  std::optional<GpuActivity> lap();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lh
