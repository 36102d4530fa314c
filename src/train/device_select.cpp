// Picks the backend for training.device: "auto" takes the GPU when there is one.
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "lighthouse/device.h"
#include "lighthouse/trainer.h"

namespace lh {

std::unique_ptr<Backend> make_backend(const std::string& device) {
  if (device == "cpu") return make_cpu_backend(DType::F32);
  const bool have_gpu = cuda_device_count() > 0;
  if (device == "auto") return have_gpu ? make_cuda_backend(0) : make_cpu_backend(DType::F32);
  if (device == "cuda") {
    if (!have_gpu) throw std::runtime_error("training.device is \"cuda\" but no CUDA device is available");
    return make_cuda_backend(0);
  }
  throw std::runtime_error("training.device: unknown device \"" + device + "\" (expected auto, cpu or cuda)");
}

}  // namespace lh
