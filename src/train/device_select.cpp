// Picks the backend for training.device ("auto" takes the GPU when there is one) and sets its
// kernel choices from the training config.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <spdlog/spdlog.h>

#include "lighthouse/device.h"
#include "lighthouse/trainer.h"

namespace lh {

std::unique_ptr<Backend> make_backend(const std::string& device, const std::string& setting) {
  if (device == "cpu") return make_cpu_backend(DType::F32);
  const bool have_gpu = cuda_device_count() > 0;
  if (device == "auto") return have_gpu ? make_cuda_backend(0) : make_cpu_backend(DType::F32);
  if (device == "cuda") {
    if (!have_gpu) throw std::runtime_error(setting + " is \"cuda\" but no CUDA device is available");
    return make_cuda_backend(0);
  }
  throw std::runtime_error(setting + ": unknown device \"" + device + "\" (expected auto, cpu or cuda)");
}

void configure_kernels(Backend& backend, const TrainingConfig& training) {
  backend.set_deterministic(training.deterministic);
  backend.set_attention_backward(attention_backward_named(training.attention_backward, "training.attention_backward"));
  // The variable only sets the default where no config is at hand (tests, `bench attention`); a
  // run's choice is the config's, so that config.json records what ran.
  const char* env = std::getenv("LH_ATTENTION_BACKWARD");
  if (env && *env && std::string(env) != training.attention_backward)
    spdlog::warn("LH_ATTENTION_BACKWARD={} is ignored: training.attention_backward = \"{}\" chooses the backward",
                 env, training.attention_backward);
}

}  // namespace lh
