#include "lighthouse/gpu_monitor.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "common/dynamic_symbols.h"

namespace lh {

GpuActivity summarize_gpu_window(const std::vector<GpuReading>& window, double power_limit_w,
                                 double max_sm_clock_mhz) {
  GpuActivity a;
  a.power_limit_w = power_limit_w;
  a.max_sm_clock_mhz = max_sm_clock_mhz;
  if (window.size() < 2) return a;
  a.seconds = window.back().t_s - window.front().t_s;

  double sum = 0;
  int capped = 0;
  for (size_t i = 1; i < window.size(); ++i) {
    const std::optional<ClockSample>& s = window[i].clock;
    if (!s) continue;
    a.min_sm_clock_mhz = a.samples == 0 ? s->sm_clock_mhz : std::min(a.min_sm_clock_mhz, s->sm_clock_mhz);
    sum += s->sm_clock_mhz;
    capped += s->power_capped ? 1 : 0;
    ++a.samples;
  }
  if (a.samples > 0) {
    a.mean_sm_clock_mhz = sum / a.samples;
    a.power_capped_fraction = double(capped) / a.samples;
  }

  auto has_energy = [](const GpuReading& r) { return r.energy_mj.has_value(); };
  const auto first = std::find_if(window.begin(), window.end(), has_energy);
  const auto last = std::find_if(window.rbegin(), window.rend(), has_energy);
  if (first != window.end() && &*first != &*last && *last->energy_mj >= *first->energy_mj &&
      last->t_s > first->t_s) {
    a.energy_j = double(*last->energy_mj - *first->energy_mj) * 1e-3;
    a.mean_power_w = *a.energy_j / (last->t_s - first->t_s);
  }
  return a;
}

nlohmann::json to_json(const GpuActivity& a) {
  nlohmann::json j = {{"gpu_seconds", a.seconds},
                      {"gpu_power_limit_w", a.power_limit_w},
                      {"sm_clock_max_mhz", a.max_sm_clock_mhz},
                      {"clock_samples", a.samples}};
  if (a.samples > 0) {  // no readings: no clock, rather than a 0 MHz one
    j["sm_clock_mhz"] = a.mean_sm_clock_mhz;
    j["sm_clock_min_mhz"] = a.min_sm_clock_mhz;
    j["power_capped_fraction"] = a.power_capped_fraction;
  }
  if (a.energy_j) j["gpu_energy_j"] = *a.energy_j;
  if (a.mean_power_w) j["gpu_power_w"] = *a.mean_power_w;
  return j;
}

std::string describe(const GpuActivity& a) {
  char power[64];
  if (a.mean_power_w)
    std::snprintf(power, sizeof power, "%.0f W", *a.mean_power_w);
  else
    std::snprintf(power, sizeof power, "power unknown");
  char buf[256];
  if (a.samples == 0) {
    std::snprintf(buf, sizeof buf, "no SM clock readings (boost %.0f MHz), %s of %.0f W", a.max_sm_clock_mhz, power,
                  a.power_limit_w);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.0f MHz mean SM clock (min %.0f, boost %.0f), %s of %.0f W (power-capped %.0f%% of the time)",
                a.mean_sm_clock_mhz, a.min_sm_clock_mhz, a.max_sm_clock_mhz, power, a.power_limit_w,
                100.0 * a.power_capped_fraction);
  return buf;
}

namespace {

// The few NVML entry points used, declared here: the CUDA toolkit ships no nvml.h, and the
// library comes with the driver. Their C ABI has been stable since NVML's first releases.
using NvmlDevice = void*;
using NvmlReturn = int;
constexpr NvmlReturn kNvmlSuccess = 0;
constexpr int kNvmlClockSm = 1;
constexpr unsigned long long kReasonSwPowerCap = 0x4, kReasonHwPowerBrake = 0x80;

struct Nvml {
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  NvmlReturn (*by_pci_bus_id)(const char*, NvmlDevice*) = nullptr;
  NvmlReturn (*clock)(NvmlDevice, int, unsigned*) = nullptr;
  NvmlReturn (*max_clock)(NvmlDevice, int, unsigned*) = nullptr;
  NvmlReturn (*energy_mj)(NvmlDevice, unsigned long long*) = nullptr;
  NvmlReturn (*power_limit_mw)(NvmlDevice, unsigned*) = nullptr;
  NvmlReturn (*clock_reasons)(NvmlDevice, unsigned long long*) = nullptr;

  // Null where the driver's library or one of the functions is missing.
  static const Nvml* load() {
    static const Nvml* loaded = [] () -> const Nvml* {
      void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
      if (!lib) return nullptr;
      static Nvml n;
      auto get = [&](auto& fn, const char* name) { return load_symbol(lib, fn, name); };
      // The clock "event" reasons were called "throttle" reasons before driver 535.
      const bool ok = get(n.init, "nvmlInit_v2") && get(n.shutdown, "nvmlShutdown") &&
                      get(n.by_pci_bus_id, "nvmlDeviceGetHandleByPciBusId_v2") &&
                      get(n.clock, "nvmlDeviceGetClockInfo") && get(n.max_clock, "nvmlDeviceGetMaxClockInfo") &&
                      get(n.energy_mj, "nvmlDeviceGetTotalEnergyConsumption") &&
                      get(n.power_limit_mw, "nvmlDeviceGetEnforcedPowerLimit") &&
                      (get(n.clock_reasons, "nvmlDeviceGetCurrentClocksEventReasons") ||
                       get(n.clock_reasons, "nvmlDeviceGetCurrentClocksThrottleReasons"));
      return ok ? &n : nullptr;
    }();
    return loaded;
  }
};

using Clock = std::chrono::steady_clock;

}  // namespace

// All NVML reads happen on the sampler thread: a query can take milliseconds, and the training
// loop, which calls lap() at every logging interval, must not wait for one (a data-parallel run
// would have every rank wait for rank 0).
struct GpuMonitor::Impl {
  const Nvml* nvml = nullptr;
  NvmlDevice device = nullptr;
  std::chrono::duration<double, std::milli> period{20};
  double power_limit_w = 0, max_clock_mhz = 0;
  const Clock::time_point epoch = Clock::now();

  std::thread sampler;
  std::mutex mu;
  std::condition_variable wake;
  bool running = false;
  // The readings of the window so far; the first one is where the window starts (the previous
  // window's last reading), so that consecutive windows neither overlap nor leave gaps.
  std::vector<GpuReading> window;

  ~Impl() {
    stop();
    nvml->shutdown();
  }
  GpuReading read() const {
    GpuReading r;
    r.t_s = std::chrono::duration<double>(Clock::now() - epoch).count();
    unsigned mhz = 0;
    unsigned long long reasons = 0, energy = 0;
    if (nvml->clock(device, kNvmlClockSm, &mhz) == kNvmlSuccess &&
        nvml->clock_reasons(device, &reasons) == kNvmlSuccess)
      r.clock = ClockSample{double(mhz), (reasons & (kReasonSwPowerCap | kReasonHwPowerBrake)) != 0};
    if (nvml->energy_mj(device, &energy) == kNvmlSuccess) r.energy_mj = energy;
    return r;
  }
  void start() {
    stop();
    window.clear();
    // Reads at once (the window's start), then every period, and a last time when stopped
    // (unless a reading was in progress then: that one is the last).
    running = true;
    try {
      sampler = std::thread([this] {
        std::unique_lock<std::mutex> lock(mu);
        for (;;) {
          lock.unlock();
          const GpuReading r = read();
          lock.lock();
          window.push_back(r);
          if (!running) break;
          wake.wait_for(lock, period, [this] { return !running; });
        }
      });
    } catch (...) {
      running = false;  // no thread to join
      throw;
    }
  }
  // The window so far, which then starts again from its last reading; nothing (and the window
  // goes on) while it holds no reading beyond its start. Caller holds mu.
  std::optional<GpuActivity> take_window() {
    if (window.size() < 2) return std::nullopt;
    const GpuActivity a = summarize_gpu_window(window, power_limit_w, max_clock_mhz);
    window.erase(window.begin(), window.end() - 1);
    return a;
  }
  std::optional<GpuActivity> lap() {
    std::lock_guard<std::mutex> lock(mu);
    return running ? take_window() : std::nullopt;
  }
  std::optional<GpuActivity> stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!running) return std::nullopt;
      running = false;
    }
    wake.notify_all();
    sampler.join();  // after its last reading
    std::lock_guard<std::mutex> lock(mu);
    return take_window();
  }
};

GpuMonitor::GpuMonitor(double sample_ms) {
  const Nvml* nvml = Nvml::load();
  int cuda_device = 0;
  char bus_id[64] = {};
  if (!nvml || cudaGetDevice(&cuda_device) != cudaSuccess ||
      cudaDeviceGetPCIBusId(bus_id, sizeof bus_id, cuda_device) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: later CUDA calls must not report this error
    return;
  }
  if (nvml->init() != kNvmlSuccess) return;
  auto impl = std::make_unique<Impl>();
  impl->nvml = nvml;
  impl->period = std::chrono::duration<double, std::milli>(sample_ms);
  unsigned limit_mw = 0, max_mhz = 0;
  if (nvml->by_pci_bus_id(bus_id, &impl->device) != kNvmlSuccess ||
      nvml->power_limit_mw(impl->device, &limit_mw) != kNvmlSuccess ||
      nvml->max_clock(impl->device, kNvmlClockSm, &max_mhz) != kNvmlSuccess)
    return;  // impl's destructor shuts NVML down again
  impl->power_limit_w = limit_mw * 1e-3;
  impl->max_clock_mhz = max_mhz;
  impl_ = std::move(impl);
}

GpuMonitor::~GpuMonitor() = default;

void GpuMonitor::start() {
  if (impl_) impl_->start();
}

std::optional<GpuActivity> GpuMonitor::stop() { return impl_ ? impl_->stop() : std::nullopt; }

std::optional<GpuActivity> GpuMonitor::lap() { return impl_ ? impl_->lap() : std::nullopt; }

}  // namespace lh
