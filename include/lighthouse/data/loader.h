// Fixed-length training windows over token shards, shuffled per epoch and partitioned across
// data-parallel ranks.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lighthouse/data/shard.h"

namespace lh::data {

// Where the global stream stands: `cursor` windows of epoch `epoch` have been consumed by all
// ranks together. Saving it in a checkpoint and restoring it reproduces the stream exactly.
struct LoaderPosition {
  uint64_t epoch = 0;
  uint64_t cursor = 0;
  bool operator==(const LoaderPosition& o) const { return epoch == o.epoch && cursor == o.cursor; }
};

class DataLoader {
 public:
  // Windows are seq_len + 1 tokens at stride seq_len + 1 inside each shard (never crossing a
  // shard; remainders dropped). Every token is checked against vocab_size once, here. Throws if
  // the shards hold fewer than micro_batch * world_size windows.
  DataLoader(const std::vector<std::string>& shard_paths, int vocab_size, int seq_len,
             int micro_batch, int rank, int world_size, uint64_t seed, bool shuffle);

  // Fills inputs and targets ([micro_batch * seq_len], row-major) with this rank's share of the
  // next global batch: rank r takes windows [cursor + r*B, cursor + (r+1)*B) of the epoch order.
  // When fewer than B * world_size windows remain, the tail is dropped and the next epoch starts.
  // Then asks the kernel to read the next batch's windows ahead (ShardView::will_need), so that
  // a step on the GPU overlaps the disk reads of the step after it; not across an epoch boundary
  // (the next order is not drawn yet), nor for the first batch after set_position.
  void next_batch(int32_t* inputs, int32_t* targets);

  LoaderPosition position() const { return {epoch_, cursor_}; }
  // Accepts any position next_batch can produce (cursor a multiple of B * world_size, at most
  // windows_per_epoch()); throws std::invalid_argument otherwise.
  void set_position(const LoaderPosition& pos);
  void reset() { set_position({0, 0}); }  // e.g. before each validation pass

  uint64_t windows_per_epoch() const { return num_windows_; }
  uint64_t batches_per_epoch() const { return num_windows_ / global_batch_windows(); }
  uint64_t tokens_per_batch() const { return uint64_t(micro_batch_) * seq_len_; }  // per rank
  uint64_t global_batch_windows() const { return uint64_t(micro_batch_) * world_size_; }
  const std::vector<std::string>& shard_paths() const { return paths_; }
  int seq_len() const { return seq_len_; }
  int micro_batch() const { return micro_batch_; }

 private:
  void build_order();                     // the permutation of window indices for epoch_
  uint64_t window_tokens() const { return uint64_t(seq_len_) + 1; }  // a window: inputs and the next token
  void read_window(uint64_t window, int32_t* out) const;  // window_tokens() tokens
  // The shard holding global window `window` and the window's first token in it.
  std::pair<const ShardView*, uint64_t> locate(uint64_t window) const;

  std::vector<std::string> paths_;
  std::vector<ShardView> shards_;
  std::vector<uint64_t> first_window_;  // first global window index of each shard, plus the total
  int seq_len_, micro_batch_, rank_, world_size_;
  uint64_t seed_;
  bool shuffle_;
  uint64_t num_windows_ = 0;
  uint64_t epoch_ = 0, cursor_ = 0;
  std::vector<uint64_t> order_;
  std::vector<int32_t> scratch_;
};

}  // namespace lh::data
