// ZeRO-1 data parallelism for one optimizer step: gradients are reduce-scattered in fp32 so each
// rank holds the summed gradient of its shard of the flat layout, the global norm is all-reduced,
// each rank runs AdamW on its shard only (moments exist for the shard alone) and refreshes the bf16
// compute copy of that shard, and the bf16 copies are all-gathered in place (half the bytes of the
// fp32 master; where there is no separate copy, as on the CPU, the master itself is gathered). A
// rank's fp32 master weights are therefore current only on its own shard; gather_master()
// completes them before a checkpoint.
// Collectives run on the backend's stream, so they are ordered after the backward pass without
// extra events; each step ends with a timed-out synchronisation (a dead peer aborts the job).
#pragma once
#include <memory>

#include "lighthouse/checkpoint.h"
#include "lighthouse/dist.h"
#include "lighthouse/model.h"
#include "lighthouse/optimizer.h"

namespace lh {

class DataParallel {
 public:
  // Elements per shard are rounded to this many (256 bytes of fp32) for aligned collectives.
  static constexpr size_t kShardAlign = 64;

  DataParallel(Communicator& comm, Backend& be, const ModelConfig& model);
  // The padded element count the model must allocate (LlamaModel's min_elements).
  size_t padded_elements() const { return count_ * size_t(comm_.world_size()); }
  // This rank's shard of the layout (AdamW's [begin, end)).
  size_t shard_begin() const;
  size_t shard_end() const;

  // Reduce-scatter, clip, sharded AdamW, all-gather, refresh the compute copy. Returns the
  // global gradient norm (of the mean gradient over ranks).
  double step(LlamaModel& model, AdamW& optimizer, double lr);
  // The mean of a host scalar over ranks.
  double mean(double value);
  // All-gathers the fp32 master weights (each rank's shard is the current one), before saving.
  void gather_master(LlamaModel& model);
  // Gathers every rank's moments into whole-layout buffers (for a checkpoint written by rank 0).
  OptimizerMoments gather_moments(const AdamW& optimizer);
  // Copies this rank's shard out of whole-layout moments (after loading a checkpoint).
  void scatter_moments(const OptimizerMoments& full, AdamW& optimizer);
  void barrier() { comm_.barrier(); }

 private:
  Communicator& comm_;
  Backend& be_;
  size_t total_, count_;
  Buffer scalar_;          // one float, for all-reducing host scalars
  Buffer full_m_, full_v_;  // gathered moments, allocated on first checkpoint
};

}  // namespace lh
