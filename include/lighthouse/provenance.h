// What produced a run's checkpoints: the source commit of this build, the backend and the versions
// of the device and libraries it runs on. Every checkpoint's state.json keeps it. A resume on other
// software or hardware says what changed, because the same config and seed give the same bits only
// on the same build, libraries and device (docs/checkpoints.md).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lighthouse/backend.h"

namespace lh {

// The commit the binary was built from: 12 hex digits, with "+changes" when the tree had
// uncommitted changes to tracked files, or "unknown" when it was not built from a git checkout.
std::string build_commit();
// One line for --version: the commit and the CUDA and cuDNN versions the build's headers name.
std::string build_description();

// {"lighthouse": build_commit(), "backend": "cpu" or "cuda", then Backend::runtime_versions()}.
nlohmann::json provenance(const Backend& backend);

// One line per key whose value differs between a checkpoint's provenance and this run's, e.g.
// "cudnn 9.14.0 -> 9.19.0" (a key on one side only reads "none" on the other). Nothing when
// `saved` is not an object: checkpoints from before provenance was recorded.
std::vector<std::string> provenance_changes(const nlohmann::json& saved, const nlohmann::json& now);

}  // namespace lh
