// ZeRO-1 data parallelism for one optimizer step. The flat gradient buffer is cut into buckets
// (plan_shard_buckets in lighthouse/dist.h) and rank r owns chunk r of every bucket. While the
// last micro-batch's backward still runs, each bucket whose gradients are final is reduce-scattered
// in fp32 into every rank's contiguous shard buffer. Then the global norm is all-reduced, each rank
// runs AdamW on its chunks only (moments exist for the shard alone) and refreshes the bf16 compute
// copy there, and the bf16 copies are all-gathered in place, bucket by bucket (half the bytes of the
// fp32 master; where there is no separate copy, as on the CPU, the master itself is gathered). A
// rank's fp32 master weights are therefore current only on its own chunks; gather_master()
// completes them before a checkpoint.
//
// Streams: every collective runs on the backend's communication stream, in one order on every
// rank (NCCL's requirement), ordered after the compute work it reads by an event and before the
// compute work that reads its result by another; the compute stream never waits on the host for
// communication. On the CPU both streams are the calling thread. Each step ends with a timed-out
// synchronisation, so a dead peer aborts the job.
#pragma once
#include <memory>
#include <vector>

#include "lighthouse/checkpoint.h"
#include "lighthouse/dist.h"
#include "lighthouse/model.h"
#include "lighthouse/optimizer.h"

namespace lh {

class DataParallel {
 public:
  // bucket_bytes: fp32 gradient bytes per bucket (training.grad_bucket_mb).
  DataParallel(Communicator& comm, Backend& be, const ModelConfig& model, size_t bucket_bytes);
  // The padded element count the model must allocate (LlamaModel's min_elements).
  size_t padded_elements() const { return count_ * size_t(comm_.world_size()); }
  // This rank's chunks inside the layout, and its shard size: what AdamW is built with.
  std::vector<OwnedRange> owned_ranges() const;
  size_t shard_elements() const { return count_; }

  // The hook to pass to the backward of a step's LAST micro-batch: it launches the reduction of
  // every bucket whose gradients are final. Earlier micro-batches only accumulate locally.
  LlamaModel::GradsReadyHook reduce_as_ready(LlamaModel& model);
  // Finishes the reduction (buckets the hook did not launch), clips, runs the sharded AdamW,
  // all-gathers the weights and refreshes the compute copy. Returns the global gradient norm (of
  // the mean gradient over ranks).
  double step(LlamaModel& model, AdamW& optimizer, double lr);
  // The mean of a host scalar over ranks.
  double mean(double value) { return means({value})[0]; }
  // The means of up to kMaxScalars host scalars over ranks, in one collective: each costs a host
  // round trip in which the GPUs idle, so a step has as few as it can.
  static constexpr size_t kMaxScalars = 4;
  std::vector<double> means(const std::vector<double>& values);
  // All-gathers the fp32 master weights (each rank's chunks are the current ones), before saving.
  void gather_master(LlamaModel& model);
  // Gathers every rank's moments into whole-layout buffers (for a checkpoint written by rank 0).
  OptimizerMoments gather_moments(const AdamW& optimizer);
  // Copies this rank's chunks out of whole-layout moments (after loading a checkpoint).
  void scatter_moments(const OptimizerMoments& full, AdamW& optimizer);
  void barrier() { comm_.barrier(); }

 private:
  // Reduce-scatters every not yet launched bucket that starts at or after `ready_from`.
  void launch_buckets(const float* grads, size_t ready_from);
  // In-place all-gather of every bucket of a padded buffer of `element_bytes`-byte elements.
  void all_gather_buckets(void* data, size_t element_bytes, void* stream);
  // The stream collectives run on, after the compute work enqueued so far.
  void* comm_after_compute();
  // Compute work enqueued from now on runs after the collectives enqueued so far.
  void compute_after_comm();

  Communicator& comm_;
  Backend& be_;
  size_t total_, count_;
  std::vector<ShardBucket> buckets_;  // in backward order
  size_t next_bucket_ = 0;            // buckets_[0, next_bucket_) are launched for this step
  Buffer shard_grads_;                // [count_]: this rank's reduced gradients
  Buffer scalar_;                     // [kMaxScalars] doubles, for all-reducing host scalars
  Buffer full_m_, full_v_;            // gathered moments, allocated on first checkpoint
};

}  // namespace lh
