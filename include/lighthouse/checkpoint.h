// Training checkpoints: one directory per step (run_dir/step_%08d) holding
//   model.safetensors      the fp32 master weights, by parameter name (ParamLayout)
//   optimizer.safetensors  AdamW's first and second moments ("m.<name>", "v.<name>")
//   state.json             step, phase, data-loader position, RNG, the full config, checksums
// written into a staging directory, fsynced and renamed into place (checkpoint_dir.h), state.json
// last. Loading verifies everything (format, config compatibility, checksums, names, shapes)
// before it touches the model, so a bad checkpoint is refused and never half-loaded.
// docs/checkpoints.md describes the format.
#pragma once
#include <stdexcept>
#include <string>

#include "lighthouse/config.h"
#include "lighthouse/data/loader.h"
#include "lighthouse/model.h"
#include "lighthouse/optimizer.h"

namespace lh {

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
  CheckpointError(const std::string& what, bool damaged) : std::runtime_error(what), damaged_files(damaged) {}
  // The checkpoint's files are damaged (a checksum mismatch, an unreadable tensor), as opposed to a
  // whole checkpoint that does not fit this run (another architecture or dtype).
  bool damaged_files = false;
};

struct TrainState {
  int step = 0;                  // optimizer steps completed
  int phase_index = 0;           // attention phase of the next step
  std::string attention = "dense";
  data::LoaderPosition loader;   // position of the training stream
  int world_size = 1;
  double tokens_seen = 0;
};

struct CheckpointInfo {
  std::string path;
  Config config;
  TrainState state;
  nlohmann::json provenance;  // what wrote it (lighthouse/provenance.h); null for older checkpoints
};

// AdamW's moments for the whole layout (device views of at least layout.total() elements) and its
// step count: what a checkpoint stores, whatever the optimizer's sharding was.
struct OptimizerMoments {
  Tensor m, v;
  int steps = 0;
};

// Writes run_dir/step_<state.step> atomically (replacing one of the same step) and prunes the run
// directory to config.training.keep_last checkpoints. Returns the checkpoint's path.
std::string save_checkpoint(const std::string& run_dir, const Config& config, const LlamaModel& model,
                            const OptimizerMoments& moments, const TrainState& state);
// The same for an unsharded optimizer.
std::string save_checkpoint(const std::string& run_dir, const Config& config, const LlamaModel& model,
                            const AdamW& optimizer, const TrainState& state);

// Reads and validates state.json (format, version, config). Throws CheckpointError naming the
// checkpoint and the problem.
CheckpointInfo read_checkpoint_info(const std::string& dir);

// Loads weights (and moments, when optimizer is not null) after verifying checksums, names,
// dtypes and shapes of every tensor against the model. The checkpoint's architecture (the keys
// that shape weights, config.h's architecture_changes) must equal model.config()'s; settings such
// as max_seq_len may differ. On any error, throws CheckpointError and leaves model and optimizer
// as they were.
CheckpointInfo load_checkpoint(const std::string& dir, LlamaModel& model, AdamW* optimizer);
// Weights only (evaluation, export, drawing).
CheckpointInfo load_checkpoint_weights(const std::string& dir, LlamaModel& model);
// The same, filling whole-layout moment views (and their step count) instead of an optimizer.
CheckpointInfo load_checkpoint(const std::string& dir, LlamaModel& model, OptimizerMoments* moments);

}  // namespace lh
