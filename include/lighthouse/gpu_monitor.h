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
  // The driver's energy counter over the window, and energy / the time between its two readings:
  // coarse under a few seconds (654-757 W seen for the same 0.8 s of work at a 700 W limit).
  // Unknown where the device has no counter or no two readings of it succeeded.
  std::optional<double> energy_j, mean_power_w;
  double power_limit_w = 0;   // the enforced power limit
  double max_sm_clock_mhz = 0;  // the device's highest SM clock (boost)
  double mean_sm_clock_mhz = 0, min_sm_clock_mhz = 0;  // over the samples
  double power_capped_fraction = 0;  // of the samples
  int samples = 0;
};

// One poll of the device, at t_s seconds on any fixed clock; a read that failed is left empty
// (a transient NVML error must not pass for a 0 MHz clock or a reset energy counter).
struct GpuReading {
  double t_s = 0;
  std::optional<ClockSample> clock;
  std::optional<unsigned long long> energy_mj;
};

// The summary of one window of readings, the first of which is where it starts: the clock
// samples of the readings after it, and the energy between the window's first and last readings
// of the counter. Empty or one-reading windows give zeros and no energy.
GpuActivity summarize_gpu_window(const std::vector<GpuReading>& window, double power_limit_w, double max_sm_clock_mhz);
// {"gpu_seconds", "clock_samples", ..., "sm_clock_mhz" and the other clock fields where there were
// samples, "gpu_energy_j" and "gpu_power_w" where known}.
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
