// ZeRO-1 data parallelism for one optimizer step. Gradients are reduced in fp32, bucket by bucket
// while the last micro-batch's backward still runs: each bucket (consecutive parameters, see
// plan_grad_buckets) is cut at shard boundaries and every piece is summed onto the rank owning it,
// so when backward ends each rank holds the summed gradient of its contiguous shard, exactly what
// one reduce-scatter would have left. The global norm is all-reduced, each rank runs AdamW on its
// shard only (moments exist for the shard alone) and refreshes the bf16 compute copy of that shard,
// and the bf16 copies are all-gathered in place (half the bytes of the fp32 master; where there is
// no separate copy, as on the CPU, the master itself is gathered). A rank's fp32 master weights are
// therefore current only on its own shard; gather_master() completes them before a checkpoint.
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
  // Elements per shard are rounded to this many (256 bytes of fp32) for aligned collectives.
  static constexpr size_t kShardAlign = 64;

  // bucket_bytes: fp32 gradient bytes per bucket of the overlapped reduction (training.grad_bucket_mb).
  DataParallel(Communicator& comm, Backend& be, const ModelConfig& model, size_t bucket_bytes);
  // The padded element count the model must allocate (LlamaModel's min_elements).
  size_t padded_elements() const { return count_ * size_t(comm_.world_size()); }
  // This rank's shard of the layout (AdamW's [begin, end)).
  size_t shard_begin() const;
  size_t shard_end() const;

  // The hook to pass to the backward of a step's LAST micro-batch: it launches the reduction of
  // every bucket whose gradients are final. Earlier micro-batches only accumulate locally.
  LlamaModel::GradsReadyHook reduce_as_ready(LlamaModel& model);
  // Finishes the reduction (buckets the hook did not launch), clips, runs the sharded AdamW,
  // all-gathers the weights and refreshes the compute copy. Returns the global gradient norm (of
  // the mean gradient over ranks).
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
  // Reduces every not yet launched bucket whose range starts at or after `ready_from`.
  void launch_buckets(float* grads, size_t ready_from);
  // The stream collectives run on, after the compute work enqueued so far.
  void* comm_after_compute();
  // Compute work enqueued from now on runs after the collectives enqueued so far.
  void compute_after_comm();

  Communicator& comm_;
  Backend& be_;
  size_t total_, count_;
  std::vector<GradBucket> buckets_;
  size_t next_bucket_ = 0;  // buckets_[0, next_bucket_) are launched for the current step
  Buffer scalar_;          // one float, for all-reducing host scalars
  Buffer full_m_, full_v_;  // gathered moments, allocated on first checkpoint
};

}  // namespace lh
