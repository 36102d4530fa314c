// The training loop: phases of attention backends, gradient accumulation, AdamW with a schedule,
// validation, metrics, checkpoints and resume.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "lighthouse/backend.h"
#include "lighthouse/config.h"

namespace lh {

struct TrainOptions {
  bool resume = false;  // continue from the newest complete checkpoint in logging.dir, if any
  bool quiet = false;   // no progress lines (tests)
  int stop_at_step = -1;  // >= 0: checkpoint and return once this many steps are done (job chunks)
  // A CUPTI timeline of steps trace_from .. trace_from + trace_steps - 1 (numbered from 1) into
  // this Chrome trace file, one per rank (src/train/step_trace.h); empty: none. CUDA only.
  std::string trace_path = {};
  int trace_from = 3, trace_steps = 2;
  // Check the config, the data, the checkpoint to resume (with resume) and that every phase left
  // fits the device's memory, then return without training or writing to logging.dir.
  bool dry_run = false;
  // resume was not asked for but is the default (the quickstart): a start without a checkpoint is
  // expected then, and not warned about. (Last: callers initialise the first fields by position.)
  bool resume_by_default = false;
};

// What one attention phase of a run holds on the device, laid out before the first step
// (src/train/memory_check.h).
struct PhaseMemory {
  int index = 0;                 // into attention.phases (0 where the config has none)
  std::string attention;         // the phase's backend name
  int first_step = 0, last_step = 0;  // numbered from 1, both included
  std::string recompute;         // what training.recompute resolved to for this phase
  size_t activation_bytes = 0;   // the activation arena
  size_t attention_bytes = 0;    // the attention backend's buffers (saved state, work buffers)
  size_t workspace_bytes = 0;    // the attention library's workspace
  size_t held_bytes = 0;         // the backend's Buffers with this phase laid out, plus the attention workspace
                                 // (small library and kernel scratch not counted)
  size_t spare_bytes = 0;        // what the backend could still allocate; SIZE_MAX where it sees no limit
};

struct TrainSummary {
  int steps_done = 0;            // optimizer steps completed in total (including before a resume)
  int steps_run = 0;             // of which this call ran
  double last_loss = 0.0;        // training loss of the last step
  double last_val_loss = -1.0;   // -1 when no validation ran
  double tokens_per_s = 0.0;     // over the steps this process ran
  std::string last_checkpoint;   // the newest checkpoint of the run (written or resumed from); empty if none
  bool interrupted = false;      // stopped early by SIGINT/SIGTERM (a checkpoint was written)
  std::vector<PhaseMemory> memory;  // the phases this call had left to run, as laid out before its first step
};

class Communicator;
// With a communicator of several ranks, trains data-parallel (ZeRO-1, src/train/data_parallel.h):
// every rank calls this with its own backend; rank 0 logs, writes metrics and checkpoints.
TrainSummary train(const Config& config, Backend& backend, const TrainOptions& options = {},
                   Communicator* comm = nullptr);

// The backend that a device setting asks for ("auto" takes CUDA when a GPU and the CUDA backend
// are present, else the CPU); errors name `setting` (the config key or the command-line flag).
std::unique_ptr<Backend> make_backend(const std::string& device, const std::string& setting = "training.device");

// Sets the backend's kernel choices from training.deterministic and training.attention_backward
// (training and `bench train` alike).
void configure_kernels(Backend& backend, const TrainingConfig& training);

}  // namespace lh
