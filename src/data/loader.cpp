// DataLoader: windows over shards, per-epoch Fisher-Yates order, rank partitioning, resumable.
#include "lighthouse/data/loader.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "lighthouse/rng.h"

namespace lh::data {
namespace {

// Enough names to identify the data set in an error without flooding the terminal.
constexpr size_t kShardsNamedInErrors = 4;

std::string describe_shards(const std::vector<std::string>& paths) {
  std::string out;
  for (size_t i = 0; i < paths.size() && i < kShardsNamedInErrors; ++i) out += (i ? ", " : "") + paths[i];
  if (paths.size() > kShardsNamedInErrors) out += fmt::format(" and {} more", paths.size() - kShardsNamedInErrors);
  return out;
}

// The epoch's permutation seed: both inputs pass through splitmix64 so that neighbouring seeds
// and epochs give unrelated streams.
uint64_t epoch_seed(uint64_t seed, uint64_t epoch) {
  uint64_t a = seed, b = epoch ^ 0xda942042e4dd58b5ULL;
  return splitmix64(a) ^ (splitmix64(b) << 1);
}

}  // namespace

DataLoader::DataLoader(const std::vector<std::string>& shard_paths, int vocab_size, int seq_len,
                       int micro_batch, int rank, int world_size, uint64_t seed, bool shuffle)
    : paths_(shard_paths), seq_len_(seq_len), micro_batch_(micro_batch), rank_(rank),
      world_size_(world_size), seed_(seed), shuffle_(shuffle) {
  if (paths_.empty()) throw std::invalid_argument("data loader: no shard paths given");
  if (seq_len <= 0 || micro_batch <= 0)
    throw std::invalid_argument(fmt::format("data loader: seq_len ({}) and micro_batch ({}) must be positive",
                                            seq_len, micro_batch));
  if (world_size <= 0 || rank < 0 || rank >= world_size)
    throw std::invalid_argument(fmt::format("data loader: rank {} is not in [0, world_size = {})", rank, world_size));
  const uint64_t window = window_tokens();
  first_window_.push_back(0);
  for (const auto& path : paths_) {
    shards_.push_back(open_shard(path));
    validate_tokens(shards_.back(), vocab_size);
    num_windows_ += shards_.back().size() / window;
    first_window_.push_back(num_windows_);
  }
  if (num_windows_ < global_batch_windows())
    throw std::runtime_error(fmt::format(
        "data loader: shards [{}] hold {} windows of seq_len + 1 = {} tokens, fewer than one global "
        "batch of micro_batch * world_size = {} * {} = {}", describe_shards(paths_), num_windows_,
        window, micro_batch, world_size, global_batch_windows()));
  scratch_.resize(window);
  build_order();
}

void DataLoader::build_order() {
  order_.resize(num_windows_);
  for (uint64_t i = 0; i < num_windows_; ++i) order_[i] = i;
  if (!shuffle_) return;
  Rng rng(epoch_seed(seed_, epoch_));
  for (uint64_t i = num_windows_ - 1; i > 0; --i) std::swap(order_[i], order_[rng.below(i + 1)]);
}

std::pair<const ShardView*, uint64_t> DataLoader::locate(uint64_t window) const {
  // The shard holding `window`: the last one whose first window index is <= window.
  const auto it = std::upper_bound(first_window_.begin(), first_window_.end(), window) - 1;
  const auto shard = static_cast<size_t>(it - first_window_.begin());
  return {&shards_[shard], (window - *it) * window_tokens()};
}

void DataLoader::read_window(uint64_t window, int32_t* out) const {
  const auto [shard, begin] = locate(window);
  shard->read(begin, window_tokens(), out);
}

void DataLoader::next_batch(int32_t* inputs, int32_t* targets) {
  const uint64_t step = global_batch_windows();
  if (cursor_ + step > num_windows_) {  // drop the epoch's tail so every batch is full
    ++epoch_;
    cursor_ = 0;
    build_order();
  }
  const size_t T = static_cast<size_t>(seq_len_);
  const uint64_t first = cursor_ + uint64_t(rank_) * micro_batch_;
  for (int b = 0; b < micro_batch_; ++b) {
    read_window(order_[first + b], scratch_.data());
    std::copy(scratch_.begin(), scratch_.begin() + T, inputs + b * T);
    std::copy(scratch_.begin() + 1, scratch_.end(), targets + b * T);
  }
  cursor_ += step;
  // Read-ahead for this rank's next batch (none across an epoch boundary, whose order is not
  // drawn yet).
  const uint64_t next = cursor_ + uint64_t(rank_) * micro_batch_;
  if (cursor_ + step <= num_windows_)
    for (int b = 0; b < micro_batch_; ++b) {
      const auto [shard, begin] = locate(order_[next + b]);
      shard->will_need(begin, window_tokens());
    }
}

void DataLoader::set_position(const LoaderPosition& pos) {
  const uint64_t step = global_batch_windows();
  if (pos.cursor % step != 0 || pos.cursor > num_windows_)
    throw std::invalid_argument(fmt::format(
        "data loader: position (epoch {}, cursor {}) is invalid: cursor must be a multiple of {} and at "
        "most {} (different data, micro_batch or world size than when it was saved?)",
        pos.epoch, pos.cursor, step, num_windows_));
  const bool same_epoch = pos.epoch == epoch_;
  epoch_ = pos.epoch;
  cursor_ = pos.cursor;
  if (!same_epoch) build_order();  // the order depends only on the epoch
}

}  // namespace lh::data
