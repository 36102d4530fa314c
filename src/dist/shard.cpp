// ZeRO-1 bucket and shard arithmetic (scheme in include/lighthouse/dist.h). Buckets are whole
// multiples of world_size * align so that each splits into equal aligned chunks, which is what
// NCCL's reduce-scatter and all-gather exchange: no packing copies, and the chunk boundaries stay
// 256-byte aligned for vector loads.
#include <algorithm>
#include <string>

#include "lighthouse/dist.h"

namespace lh {
namespace {

void check(int rank, int world_size, size_t align) {
  if (world_size < 1) throw DistError("shard: world size " + std::to_string(world_size) + " must be >= 1");
  if (rank < 0 || rank >= world_size)
    throw DistError("shard: rank " + std::to_string(rank) + " outside [0, " + std::to_string(world_size) + ")");
  if (align == 0) throw DistError("shard: alignment must be >= 1 element");
}

size_t ceil_div(size_t a, size_t b) { return a / b + (a % b != 0); }

}  // namespace

size_t shard_count(size_t total, int world_size, size_t align) {
  check(0, world_size, align);
  // ceil(total / world) rounded up to `align`, i.e. align * ceil(total / (world * align)): the
  // smallest aligned chunk size whose world_size copies cover the buffer.
  return align * ceil_div(ceil_div(total, size_t(world_size)), align);
}

size_t padded_total(size_t total, int world_size, size_t align) {
  return shard_count(total, world_size, align) * size_t(world_size);
}

std::vector<ShardBucket> plan_shard_buckets(size_t total, int world_size, size_t align, size_t bucket_elements) {
  if (bucket_elements == 0) throw DistError("shard: buckets must hold >= 1 element");
  const size_t padded = padded_total(total, world_size, align);
  const size_t unit = size_t(world_size) * align;  // every bucket is a whole number of these
  const size_t size = unit * ceil_div(bucket_elements, unit);
  std::vector<ShardBucket> buckets;
  for (size_t end = padded; end > 0;) {
    const size_t begin = end > size ? end - size : 0;
    buckets.push_back({begin, end, (end - begin) / size_t(world_size), 0});
    end = begin;
  }
  size_t offset = 0;  // in layout order, i.e. from the last bucket
  for (auto b = buckets.rbegin(); b != buckets.rend(); ++b) {
    b->shard_offset = offset;
    offset += b->chunk;
  }
  return buckets;
}

}  // namespace lh
