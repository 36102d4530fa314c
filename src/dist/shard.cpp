// ZeRO-1 shard arithmetic (scheme in include/lighthouse/dist.h). Shards are the equal chunks of the
// padded buffer because that is what NCCL's reduce-scatter and all-gather exchange: the optimizer
// can then step on its chunk of the gradient buffer where reduce-scatter left it, and all-gather
// the updated weights in place, without packing or unpacking copies.
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

ShardRange shard_range(size_t total, int rank, int world_size, size_t align) {
  check(rank, world_size, align);
  const size_t count = shard_count(total, world_size, align);
  const size_t begin = std::min(total, size_t(rank) * count);
  return {begin, std::min(total, begin + count)};
}

std::vector<OwnedPiece> split_by_owner(size_t begin, size_t end, size_t count) {
  if (count == 0) throw DistError("shard: split_by_owner needs a shard size >= 1");
  if (begin > end) throw DistError("shard: split_by_owner got an inverted range");
  std::vector<OwnedPiece> pieces;
  for (size_t at = begin; at < end;) {
    const size_t owner = at / count, stop = std::min(end, (owner + 1) * count);
    pieces.push_back({at, stop, int(owner)});
    at = stop;
  }
  return pieces;
}

}  // namespace lh
