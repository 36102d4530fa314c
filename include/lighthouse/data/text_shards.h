// Plain text files -> byte-level train/val shards.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/data/shard.h"

namespace lh::data {

struct TextShardStats {
  uint64_t documents = 0;
  uint64_t train_documents = 0;  // a single input document split in two counts on both sides
  uint64_t val_documents = 0;
  uint64_t train_tokens = 0;
  uint64_t val_tokens = 0;
  std::vector<std::string> train_shards;
  std::vector<std::string> val_shards;
  // Documents holding a NUL byte: binary files, most likely, that went in as bytes all the same.
  std::vector<std::string> binary_documents;
};

// Every file under `inputs` (files, or directories searched recursively; sorted by path) is one
// document: its bytes followed by kEndOfDocument. Documents go to val at evenly spaced positions
// in that order, round(n * val_fraction) of them (at least one when val_fraction > 0 and n >= 2,
// never all). A single document is split instead: its last val_fraction of bytes become the val
// document. Shards are written as out_dir/train_NNNNNN.bin and out_dir/val_NNNNNN.bin holding at
// most shard_tokens tokens each, and published by ShardBuild: stale shards of those names already in
// out_dir are removed then, so that a directory spec never mixes two builds.
TextShardStats build_text_shards(const std::vector<std::string>& inputs, const std::string& out_dir,
                                 double val_fraction, uint64_t shard_tokens = kDefaultShardTokens);

}  // namespace lh::data
