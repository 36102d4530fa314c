// KernelTracer through CUPTI's activity API. libcupti is loaded at run time, and only the one of
// the CUDA major version this was compiled against: the record structs read here
// (CUpti_ActivityKernel10, ...) are those of this toolkit's cupti.h, and only their leading
// fields (kind, start, end, stream, name, copy kind), which later versions of a record keep.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cupti.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "common/dynamic_symbols.h"
#include "lighthouse/device.h"
#include "lighthouse/kernel_trace.h"

namespace lh {
namespace {

struct Cupti {
  decltype(&cuptiActivityRegisterCallbacks) register_callbacks = nullptr;
  decltype(&cuptiActivityEnable) enable = nullptr;
  decltype(&cuptiActivityDisable) disable = nullptr;
  decltype(&cuptiActivityFlushAll) flush_all = nullptr;
  decltype(&cuptiActivityGetNextRecord) next_record = nullptr;
  decltype(&cuptiActivityGetNumDroppedRecords) dropped_records = nullptr;
  decltype(&cuptiGetResultString) result_string = nullptr;

  std::string error(CUptiResult r) const {
    const char* s = nullptr;
    return result_string && result_string(r, &s) == CUPTI_SUCCESS && s ? s : "CUPTI error " + std::to_string(int(r));
  }
};

const std::string kLibrary = "libcupti.so." + std::to_string(CUDA_VERSION / 1000);

const Cupti* load_cupti() {
  static const Cupti* loaded = []() -> const Cupti* {
    void* lib = dlopen(kLibrary.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) return nullptr;
    static Cupti c;
    auto get = [&](auto& fn, const char* name) { return load_symbol(lib, fn, name); };
    const bool ok = get(c.register_callbacks, "cuptiActivityRegisterCallbacks") &&
                    get(c.enable, "cuptiActivityEnable") && get(c.disable, "cuptiActivityDisable") &&
                    get(c.flush_all, "cuptiActivityFlushAll") && get(c.next_record, "cuptiActivityGetNextRecord") &&
                    get(c.dropped_records, "cuptiActivityGetNumDroppedRecords") &&
                    get(c.result_string, "cuptiGetResultString");
    return ok ? &c : nullptr;
  }();
  return loaded;
}

constexpr CUpti_ActivityKind kKinds[] = {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMCPY,
                                         CUPTI_ACTIVITY_KIND_MEMSET};
constexpr size_t kBufferBytes = size_t(8) << 20, kBufferAlign = 8;

// What CUPTI's buffer callbacks (on CUPTI's own thread) have handed over, and how many records
// were lost: dropped by CUPTI (no buffer), unreadable, or incomplete (no end time).
std::mutex g_mu;
std::vector<TraceEvent> g_events;
size_t g_lost = 0;
bool g_incomplete_buffer = false;  // a buffer given up part way

const char* memcpy_name(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "memcpy HtoD";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "memcpy DtoH";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "memcpy DtoD";
    default: return "memcpy";
  }
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(kBufferAlign, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;  // as many as fit
}

// A C callback: nothing may be thrown through CUPTI's frames, and the buffer is ours to free.
void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  const Cupti* cupti = load_cupti();
  std::vector<TraceEvent> got;
  size_t lost = 0;
  try {
    auto add = [&](TraceEvent::Kind kind, std::string name, uint64_t start, uint64_t end, uint32_t stream_id) {
      if (start == 0 || end < start) {
        ++lost;
        return;
      }
      got.push_back({kind, std::move(name), start, end, stream_id});
    };
    CUpti_Activity* r = nullptr;
    while (buffer && cupti->next_record(buffer, valid, &r) == CUPTI_SUCCESS) {
      if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
        const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(r);
        add(TraceEvent::Kind::kKernel, short_kernel_name(k->name), k->start, k->end, k->streamId);
      } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
        const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(r);
        add(TraceEvent::Kind::kMemcpy, memcpy_name(m->copyKind), m->start, m->end, m->streamId);
      } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
        const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(r);
        add(TraceEvent::Kind::kMemset, "memset", m->start, m->end, m->streamId);
      }
    }
    std::lock_guard<std::mutex> lock(g_mu);
    g_events.insert(g_events.end(), got.begin(), got.end());
    g_lost += lost;
  } catch (...) {  // out of memory: the records read so far are lost (those after them uncounted)
    std::lock_guard<std::mutex> lock(g_mu);
    g_lost += lost + got.size();
    g_incomplete_buffer = true;
  }
  std::free(buffer);
}

bool g_tracing = false;  // one tracer at a time

}  // namespace

std::unique_ptr<KernelTracer> KernelTracer::start(std::string* why_not) {
  auto refuse = [&](const std::string& why) -> std::unique_ptr<KernelTracer> {
    if (why_not) *why_not = why;
    return nullptr;
  };
  if (g_tracing) return refuse("another kernel trace is running");
  if (cuda_device_count() == 0) return refuse("no CUDA device");
  const Cupti* cupti = load_cupti();
  if (!cupti) return refuse(kLibrary + " could not be loaded (it comes with the CUDA toolkit)");
  static const CUptiResult registered = cupti->register_callbacks(buffer_requested, buffer_completed);
  if (registered != CUPTI_SUCCESS) return refuse("CUPTI: " + cupti->error(registered));
  for (CUpti_ActivityKind kind : kKinds) {
    if (const CUptiResult r = cupti->enable(kind); r != CUPTI_SUCCESS) {
      for (CUpti_ActivityKind k : kKinds) cupti->disable(k);
      return refuse("CUPTI: " + cupti->error(r));
    }
  }
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_events.clear();
    g_lost = 0;
    g_incomplete_buffer = false;
  }
  g_tracing = true;
  return std::unique_ptr<KernelTracer>(new KernelTracer());
}

std::vector<TraceEvent> KernelTracer::stop() {
  if (stopped_) return {};
  stopped_ = true;
  const Cupti* cupti = load_cupti();
  const cudaError_t synced = cudaDeviceSynchronize();  // the traced work is complete ...
  for (CUpti_ActivityKind kind : kKinds) cupti->disable(kind);  // ... nothing later is recorded ...
  const CUptiResult flushed = cupti->flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);  // ... and all is handed over
  g_tracing = false;
  size_t dropped = 0;  // records CUPTI had no buffer for (the context and stream arguments are unused)
  cupti->dropped_records(nullptr, 0, &dropped);
  std::vector<TraceEvent> events;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    events.swap(g_events);
    lost_ = g_lost + dropped;
    if (g_incomplete_buffer) problem_ = "a buffer of records could not be read (out of memory)";
  }
  if (synced != cudaSuccess) problem_ = std::string("waiting for the device: ") + cudaGetErrorString(synced);
  if (flushed != CUPTI_SUCCESS) problem_ = "CUPTI flush: " + cupti->error(flushed);
  std::stable_sort(events.begin(), events.end(),
                   [](const TraceEvent& a, const TraceEvent& b) { return a.start_ns < b.start_ns; });
  return events;
}

std::string KernelTracer::incomplete() const {
  std::string why = problem_;
  if (lost_ > 0) why += (why.empty() ? "" : "; ") + std::to_string(lost_) + " records lost";
  return why;
}

KernelTracer::~KernelTracer() { stop(); }

}  // namespace lh
