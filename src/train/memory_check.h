// Before the first step, every attention phase the run has left is laid out once, one at a time
// from the same start (weights, gradients and optimizer state held): its activations as
// training.recompute resolves them, the attention backend's saved state and the library workspace.
// A phase that does not fit the device then fails before any training, naming itself, rather than
// at its first step, maybe hours into the run; each one that fits says what it holds.
#pragma once
#include <string>
#include <vector>

#include "lighthouse/config.h"
#include "lighthouse/model.h"
#include "lighthouse/trainer.h"  // PhaseMemory

namespace lh {

// Lays out the phases that steps from_step (0-based) .. training.steps - 1 run, and frees each
// again (the model is left with no attention backend and no activations). Throws OutOfMemory
// naming the phase, its steps and the settings that size it when one does not fit.
std::vector<PhaseMemory> check_phases_fit(LlamaModel& model, const Config& cfg, int from_step);

// One line: "phase 1 of 2 (lighthouse, steps 1-4500): recompute none, activations 82.10 GiB, ...".
std::string describe(const PhaseMemory& phase, size_t n_phases);

}  // namespace lh
