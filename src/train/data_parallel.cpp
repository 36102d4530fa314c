#include "train/data_parallel.h"

#include <algorithm>
#include <cmath>

namespace lh {

DataParallel::DataParallel(Communicator& comm, Backend& be, const ModelConfig& model)
    : comm_(comm), be_(be), total_(ParamLayout(model).total()),
      count_(shard_count(total_, comm.world_size(), kShardAlign)) {
  scalar_ = be_.allocate(DType::F32, 1);
}

size_t DataParallel::shard_begin() const { return std::min(total_, count_ * size_t(comm_.rank())); }
size_t DataParallel::shard_end() const { return std::min(total_, count_ * size_t(comm_.rank() + 1)); }

double DataParallel::mean(double value) {
  const float v = float(value);
  be_.copy_from_host(scalar_.view(), &v);
  comm_.all_reduce_sum(scalar_.view().as<float>(), 1, be_.stream());
  comm_.synchronize(be_.stream());
  float sum = 0;
  be_.copy_to_host(&sum, scalar_.view());
  return double(sum) / comm_.world_size();
}

double DataParallel::step(LlamaModel& model, AdamW& optimizer, double lr) {
  const int world = comm_.world_size(), rank = comm_.rank();
  float* grads = model.padded_grads().as<float>();
  // In place: rank r's summed shard lands at grads + r * count.
  comm_.reduce_scatter_sum(grads, grads + size_t(rank) * count_, count_, be_.stream());
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
  comm_.all_gather(weights + size_t(rank) * bytes, weights, bytes, be_.stream());
  comm_.synchronize(be_.stream());
  return norm;
}

void DataParallel::gather_master(LlamaModel& model) {
  float* params = model.padded_params().as<float>();
  comm_.all_gather(params + size_t(comm_.rank()) * count_, params, count_ * sizeof(float), be_.stream());
  comm_.synchronize(be_.stream());
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
    comm_.all_gather(base + rank_offset, base, count_ * sizeof(float), be_.stream());
  }
  comm_.synchronize(be_.stream());
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
