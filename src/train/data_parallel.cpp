#include "train/data_parallel.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace lh {

DataParallel::DataParallel(Communicator& comm, Backend& be, const ModelConfig& model, size_t bucket_bytes)
    : comm_(comm), be_(be), total_(ParamLayout(model).total()),
      count_(shard_count(total_, comm.world_size(), kShardAlign)),
      buckets_(plan_shard_buckets(total_, comm.world_size(), kShardAlign, std::max<size_t>(1, bucket_bytes / sizeof(float)))) {
  naming_purpose("this rank's gradient shard (" + std::to_string(count_) + " fp32 values)", [&] {
    shard_grads_ = be_.allocate(be_.param_dtype(), count_);
    scalar_ = be_.allocate(DType::F64, kMaxScalars);
  });
}

std::vector<OwnedRange> DataParallel::owned_ranges() const {
  std::vector<OwnedRange> owned;
  for (const ShardBucket& b : buckets_) {
    const size_t begin = b.owned_begin(comm_.rank()), end = std::min(total_, begin + b.chunk);
    if (begin < end) owned.push_back({begin, end, b.shard_offset});  // padding is nobody's work
  }
  return owned;
}

void* DataParallel::comm_after_compute() {
  void* comm_stream = be_.comm_stream();
  be_.stream_wait(comm_stream, be_.stream());
  return comm_stream;
}

void DataParallel::compute_after_comm() { be_.stream_wait(be_.stream(), be_.comm_stream()); }

void DataParallel::launch_buckets(const float* grads, size_t ready_from) {
  const size_t first = next_bucket_;
  while (next_bucket_ < buckets_.size() && buckets_[next_bucket_].begin >= ready_from) ++next_bucket_;
  if (first == next_bucket_) return;
  void* stream = comm_after_compute();  // one event covers every bucket ready now
  float* shard = shard_grads_.view().as<float>();
  comm_.group_start();
  for (size_t i = first; i < next_bucket_; ++i) {
    const ShardBucket& b = buckets_[i];
    comm_.reduce_scatter_sum(grads + b.begin, shard + b.shard_offset, b.chunk, stream);
  }
  comm_.group_end();
}

void DataParallel::all_gather_buckets(void* data, size_t element_bytes, void* stream) {
  char* base = static_cast<char*>(data);
  comm_.group_start();
  for (const ShardBucket& b : buckets_)
    comm_.all_gather(base + b.owned_begin(comm_.rank()) * element_bytes, base + b.begin * element_bytes,
                     b.chunk * element_bytes, stream);
  comm_.group_end();
}

LlamaModel::GradsReadyHook DataParallel::reduce_as_ready(LlamaModel& model) {
  const float* grads = model.padded_grads().as<float>();
  return [this, grads](size_t ready_from) { launch_buckets(grads, ready_from); };
}

std::vector<double> DataParallel::means(const std::vector<double>& values) {
  if (values.empty() || values.size() > kMaxScalars)
    throw std::logic_error("DataParallel::means takes 1 to " + std::to_string(kMaxScalars) + " values");
  const size_t n = values.size();
  std::vector<double> v = values;
  be_.copy_from_host(scalar_.slice(0, n), v.data());
  void* stream = comm_after_compute();
  comm_.all_reduce_sum(scalar_.view().as<double>(), n, stream);
  comm_.synchronize(stream);
  compute_after_comm();
  be_.copy_to_host(v.data(), scalar_.slice(0, n));
  for (double& x : v) x /= comm_.world_size();
  return v;
}

double DataParallel::step(LlamaModel& model, AdamW& optimizer, double lr) {
  const int world = comm_.world_size();
  launch_buckets(model.padded_grads().as<float>(), 0);  // what the hook did not launch (all, without it)
  next_bucket_ = 0;
  compute_after_comm();
  const Tensor shard = shard_grads_.view();
  be_.scale_inplace(shard, 1.0 / world);  // mean over ranks, as one process with the global batch
  // The global norm from per-shard sums of squares (padding is zero).
  const double norm = std::sqrt(mean(be_.sum_squares(shard)) * world);
  // Gather the weights the forward pass reads: the bf16 compute copy on CUDA (half the bytes of the
  // master), the master itself where there is no separate copy (CPU).
  const Tensor compute = model.padded_compute_copy();
  optimizer.apply(model.padded_params(), shard, compute, lr, optimizer.clip_scale(norm));
  const Tensor gathered = compute.data ? compute : model.padded_params();
  void* stream = comm_after_compute();
  all_gather_buckets(gathered.data, dtype_size(gathered.dtype), stream);
  comm_.synchronize(stream);
  compute_after_comm();
  return norm;
}

void DataParallel::gather_master(LlamaModel& model) {
  const Tensor params = model.padded_params();
  void* stream = comm_after_compute();
  all_gather_buckets(params.data, dtype_size(params.dtype), stream);
  comm_.synchronize(stream);
  compute_after_comm();
}

OptimizerMoments DataParallel::gather_moments(const AdamW& optimizer) {
  if (!full_m_.view().data) {
    naming_purpose("the whole optimizer moments gathered for a checkpoint (2 x " + std::to_string(padded_elements()) +
                       " fp32 values)", [&] {
      full_m_ = be_.allocate(be_.param_dtype(), padded_elements());
      full_v_ = be_.allocate(be_.param_dtype(), padded_elements());
    });
  }
  void* stream = comm_after_compute();
  for (auto [shard, full] : {std::make_pair(optimizer.m(), full_m_.view()), std::make_pair(optimizer.v(), full_v_.view())}) {
    // Out of place: each rank's chunk of a bucket sits in its shard buffer, and lands at the
    // bucket's place in the whole layout (padding slots of the shard are zero).
    const size_t es = dtype_size(shard.dtype);
    const char* from = static_cast<const char*>(shard.data);
    char* to = static_cast<char*>(full.data);
    comm_.group_start();
    for (const ShardBucket& b : buckets_)
      comm_.all_gather(from + b.shard_offset * es, to + b.begin * es, b.chunk * es, stream);
    comm_.group_end();
  }
  comm_.synchronize(stream);
  compute_after_comm();
  const size_t n = total_;
  return {full_m_.slice(0, n), full_v_.slice(0, n), optimizer.steps_taken()};
}

void DataParallel::scatter_moments(const OptimizerMoments& full, AdamW& optimizer) {
  for (const OwnedRange& r : optimizer.owned()) {
    const size_t n = r.end - r.begin;
    be_.convert(optimizer.m().slice(r.local, n), full.m.slice(r.begin, n));
    be_.convert(optimizer.v().slice(r.local, n), full.v.slice(r.begin, n));
  }
  optimizer.set_steps_taken(full.steps);
}

}  // namespace lh
