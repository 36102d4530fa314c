// Picks the backend for training.device. The CUDA backend is not part of this build yet, so "auto"
// runs on the CPU and "cuda" is refused with an explanation rather than silently falling back.
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "lighthouse/device.h"
#include "lighthouse/trainer.h"

namespace lh {

std::unique_ptr<Backend> make_backend(const std::string& device) {
  if (device == "cpu") return make_cpu_backend(DType::F32);
  if (device == "auto") {
    if (cuda_device_count() > 0)
      spdlog::warn("a CUDA device is present ({}) but the CUDA backend is not built yet; training on the CPU",
                   cuda_device_description(0));
    return make_cpu_backend(DType::F32);
  }
  if (device == "cuda")
    throw std::runtime_error("training.device: \"cuda\" is not available yet (the CUDA backend is not built); "
                             "use \"cpu\" or \"auto\"");
  throw std::runtime_error("training.device: unknown device \"" + device + "\" (expected auto, cpu or cuda)");
}

}  // namespace lh
