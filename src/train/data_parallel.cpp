#include "train/data_parallel.h"

#include <algorithm>
#include <cmath>

namespace lh {

DataParallel::DataParallel(Communicator& comm, Backend& be, const ModelConfig& model, size_t bucket_bytes)
    : comm_(comm), be_(be), total_(ParamLayout(model).total()),
      count_(shard_count(total_, comm.world_size(), kShardAlign)),
      buckets_(plan_grad_buckets(ParamLayout(model), bucket_bytes)) {
  scalar_ = be_.allocate(DType::F32, 1);
}

void* DataParallel::comm_after_compute() {
  void* comm_stream = be_.comm_stream();
  be_.stream_wait(comm_stream, be_.stream());
  return comm_stream;
}

void DataParallel::compute_after_comm() { be_.stream_wait(be_.stream(), be_.comm_stream()); }

void DataParallel::launch_buckets(float* grads, size_t ready_from) {
  void* stream = nullptr;
  bool waited = false;
  for (; next_bucket_ < buckets_.size() && buckets_[next_bucket_].begin >= ready_from; ++next_bucket_) {
    if (!waited) stream = comm_after_compute(), waited = true;  // one event covers every bucket ready now
    const GradBucket& b = buckets_[next_bucket_];
    comm_.group_start();
    for (const OwnedPiece& piece : split_by_owner(b.begin, b.end, count_))
      comm_.reduce_sum(grads + piece.begin, piece.size(), piece.owner, stream);
    comm_.group_end();
  }
}

LlamaModel::GradsReadyHook DataParallel::reduce_as_ready(LlamaModel& model) {
  float* grads = model.padded_grads().as<float>();
  return [this, grads](size_t ready_from) { launch_buckets(grads, ready_from); };
}

size_t DataParallel::shard_begin() const { return std::min(total_, count_ * size_t(comm_.rank())); }
size_t DataParallel::shard_end() const { return std::min(total_, count_ * size_t(comm_.rank() + 1)); }

double DataParallel::mean(double value) {
  const float v = float(value);
  be_.copy_from_host(scalar_.view(), &v);
  void* stream = comm_after_compute();
  comm_.all_reduce_sum(scalar_.view().as<float>(), 1, stream);
  comm_.synchronize(stream);
  compute_after_comm();
  float sum = 0;
  be_.copy_to_host(&sum, scalar_.view());
  return double(sum) / comm_.world_size();
}

double DataParallel::step(LlamaModel& model, AdamW& optimizer, double lr) {
  const int world = comm_.world_size(), rank = comm_.rank();
  launch_buckets(model.padded_grads().as<float>(), 0);  // what the hook did not launch (all, without it)
  next_bucket_ = 0;
  compute_after_comm();
  // Rank r's summed shard now sits at grads + r * count.
  const Tensor shard = model.padded_grads().slice(size_t(rank) * count_, count_);
  be_.scale_inplace(shard, 1.0 / world);  // mean over ranks, as one process with the global batch
  // The global norm from per-shard sums of squares (padding is zero).
  const double norm = std::sqrt(mean(be_.sum_squares(shard)) * world);
  const Tensor owned = shard.slice(0, shard_end() - shard_begin());
  // Gather the weights the forward pass reads: the bf16 compute copy on CUDA (half the bytes of the
  // master), the master itself where there is no separate copy (CPU).
  const Tensor compute = model.padded_compute_copy();
  optimizer.apply(model.padded_params(), owned, compute, lr, optimizer.clip_scale(norm));
  const Tensor gathered = compute.data ? compute : model.padded_params();
  char* weights = static_cast<char*>(gathered.data);
  const size_t bytes = count_ * dtype_size(gathered.dtype);
  void* stream = comm_after_compute();
  comm_.all_gather(weights + size_t(rank) * bytes, weights, bytes, stream);
  comm_.synchronize(stream);
  compute_after_comm();
  return norm;
}

void DataParallel::gather_master(LlamaModel& model) {
  float* params = model.padded_params().as<float>();
  void* stream = comm_after_compute();
  comm_.all_gather(params + size_t(comm_.rank()) * count_, params, count_ * sizeof(float), stream);
  comm_.synchronize(stream);
  compute_after_comm();
}

OptimizerMoments DataParallel::gather_moments(const AdamW& optimizer) {
  if (!full_m_.view().data) {
    full_m_ = be_.allocate(DType::F32, padded_elements());
    full_v_ = be_.allocate(DType::F32, padded_elements());
  }
  const size_t owned = shard_end() - shard_begin(), rank_offset = size_t(comm_.rank()) * count_;
  for (auto [src, dst] : {std::make_pair(optimizer.m(), &full_m_), std::make_pair(optimizer.v(), &full_v_)}) {
    // Each rank contributes exactly count elements: its moments, then zeros for the padding.
    const Tensor mine = dst->slice(rank_offset, count_);
    be_.fill_zero(mine);
    if (owned) be_.convert(mine.slice(0, owned), src);
    float* base = dst->view().as<float>();
    comm_.all_gather(base + rank_offset, base, count_ * sizeof(float), comm_after_compute());
  }
  comm_.synchronize(be_.comm_stream());
  compute_after_comm();
  return {full_m_.view(), full_v_.view(), optimizer.steps_taken()};
}

void DataParallel::scatter_moments(const OptimizerMoments& full, AdamW& optimizer) {
  const size_t owned = shard_end() - shard_begin();
  if (owned) {
    be_.convert(optimizer.m(), full.m.slice(shard_begin(), owned));
    be_.convert(optimizer.v(), full.v.slice(shard_begin(), owned));
  }
  optimizer.set_steps_taken(full.steps);
}

}  // namespace lh
