// Which cuDNN engine configuration runs an operation graph. By default: the first configuration of
// heuristics mode A whose plan finalizes. For tuning and diagnosis the choice can be overridden per
// graph name (FORWARD, BACKWARD) from the environment; none of this changes results silently, and
// every override is printed when LH_CUDNN_VERBOSE is set:
//   LH_CUDNN_HEUR_MODE=A|B|FALLBACK      heuristics mode for every graph
//   LH_CUDNN_<NAME>_CONFIG=n             take the n-th finalizable configuration instead of the first
//   LH_CUDNN_<NAME>_KNOBS=type:value,... replace knob choices of the chosen configuration (type is the
//                                         number of a cudnnBackendKnobType_t)
//   LH_CUDNN_VERBOSE=1                   list every candidate: engine, knob choices, knob ranges
// (LH_CUDNN_WORKSPACE_LIMIT_MB, read by cudnn_sdpa.cpp, caps the workspace of one attention call.)
#pragma once
#include <cudnn.h>

#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "cudnn_graph.h"

namespace lh::cuda {

using KnobChoices = std::vector<std::pair<int64_t, int64_t>>;  // (cudnnBackendKnobType_t, value)

struct EngineChoiceOptions {
  cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  int64_t config_index = 0;  // among configurations whose plan finalizes
  KnobChoices knob_overrides;
  bool verbose = false;
};

// The integer in `text`, else throws std::invalid_argument naming `variable`.
int64_t parse_int(const std::string& text, const std::string& variable);

// Reads the LH_CUDNN_* variables for the graph called `name` (e.g. "BACKWARD"). Throws on a
// malformed value, naming the variable.
EngineChoiceOptions engine_choice_from_env(const std::string& name);

// The engine's global index and the knob choices of an engine configuration descriptor.
int64_t engine_global_index(cudnnBackendDescriptor_t engine_config);
KnobChoices knob_choices(cudnnBackendDescriptor_t engine_config);
// "engine 8, knobs {2:1, 14:3}, ranges {2:[0,3]/1, ...}" for logs.
std::string describe_engine_config(cudnnBackendDescriptor_t engine_config);

// A finalized engine configuration: the engine of `base` with its knob choices, each replaced where
// `overrides` names that knob (knobs that `base` does not set are added). Every descriptor it
// creates lives in `keep_alive`.
CudnnDesc& make_engine_config(cudnnBackendDescriptor_t graph, cudnnBackendDescriptor_t base,
                              const KnobChoices& overrides, std::deque<CudnnDesc>& keep_alive);

}  // namespace lh::cuda
