#include "lighthouse/provenance.h"

#include <cuda_runtime_api.h>  // CUDART_VERSION
#include <cudnn_version.h>

#include <set>

#include "build_info.h"  // generated at build time by cmake/build_info.cmake

namespace lh {

std::string build_commit() { return std::string(LH_GIT_COMMIT) + (LH_GIT_DIRTY ? "+changes" : ""); }

std::string build_description() {
  return "lighthouse " + build_commit() + ", built against CUDA " + std::to_string(CUDART_VERSION / 1000) + "." +
         std::to_string(CUDART_VERSION % 1000 / 10) + " and cuDNN " + std::to_string(CUDNN_MAJOR) + "." +
         std::to_string(CUDNN_MINOR) + "." + std::to_string(CUDNN_PATCHLEVEL);
}

nlohmann::json provenance(const Backend& backend) {
  nlohmann::json j = {{"lighthouse", build_commit()}, {"backend", backend.device() == Device::CUDA ? "cuda" : "cpu"}};
  for (const auto& [key, value] : backend.runtime_versions()) j[key] = value;
  return j;
}

std::vector<std::string> provenance_changes(const nlohmann::json& saved, const nlohmann::json& now) {
  std::vector<std::string> out;
  if (!saved.is_object() || !now.is_object()) return out;
  std::set<std::string> keys;
  for (const auto& [k, v] : saved.items()) keys.insert(k);
  for (const auto& [k, v] : now.items()) keys.insert(k);
  auto text = [](const nlohmann::json& j, const std::string& k) {
    if (!j.contains(k)) return std::string("none");
    return j[k].is_string() ? j[k].get<std::string>() : j[k].dump();
  };
  for (const std::string& k : keys)
    if (text(saved, k) != text(now, k)) out.push_back(k + " " + text(saved, k) + " -> " + text(now, k));
  return out;
}

}  // namespace lh
