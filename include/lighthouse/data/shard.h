// Token shards on disk, in llm.c's format so that shards produced by llm.c's data scripts (and
// ours) are interchangeable: a header of 256 int32 (magic, version, token count, rest zero)
// followed by the tokens as little-endian uint16 or uint32, the width being given by the magic.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/checkpoint_dir.h"  // StagedDir

namespace lh::data {

// Byte-level vocabulary: ids 0..255 are raw bytes, 256 marks the end of a document.
constexpr int kByteVocab = 256;
constexpr int32_t kEndOfDocument = 256;
constexpr int kByteVocabSize = 257;

constexpr int kShardHeaderInts = 256;
constexpr size_t kShardHeaderBytes = kShardHeaderInts * sizeof(int32_t);
constexpr int32_t kShardMagicU16 = 20240520;  // llm.c's GPT-2 shards
constexpr int32_t kShardMagicU32 = 20240801;  // llm.c's Llama-3 shards (vocab > 65535)
constexpr int32_t kShardVersion = 1;
// Default shard size for our writers: large enough to keep the file count low, small enough that
// the in-memory staging buffer (4 bytes per token) stays modest.
constexpr uint64_t kDefaultShardTokens = uint64_t{1} << 24;

// Writes `tokens` as one shard, uint16 when every id fits, else uint32. The file appears
// atomically (written to a temporary name, then renamed) so a crash never leaves a torn shard.
// Throws on negative ids or I/O errors.
void write_shard(const std::string& path, const std::vector<int32_t>& tokens);

// A read-only memory map of one validated shard. Move-only; unmaps on destruction.
class ShardView {
 public:
  ShardView() = default;
  ~ShardView();
  ShardView(ShardView&& other) noexcept;
  ShardView& operator=(ShardView&& other) noexcept;
  ShardView(const ShardView&) = delete;
  ShardView& operator=(const ShardView&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return num_tokens_; }  // number of tokens
  int token_bytes() const { return token_bytes_; }  // 2 or 4
  int32_t operator[](uint64_t i) const;
  // Copies tokens [begin, begin + count) into `out`, widening to int32. Bounds-checked.
  void read(uint64_t begin, uint64_t count, int32_t* out) const;
  // Asks the kernel to start reading tokens [begin, begin + count) into the page cache, so that a
  // later read() need not wait on the disk. Advisory: no effect on what read() returns. The range
  // is clipped to the shard and widened to whole pages; returns the bytes advised (0: none).
  size_t will_need(uint64_t begin, uint64_t count) const;
  // Largest token id (0 for an empty shard); a single pass over the map.
  uint32_t max_token() const;

 private:
  friend ShardView open_shard(const std::string& path);
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  const unsigned char* tokens_ = nullptr;
  uint64_t num_tokens_ = 0;
  int token_bytes_ = 0;
};

// Maps and validates a shard: size >= header, known magic ("<path>: unknown shard magic N"),
// version, and size == header + count * width (else an error naming path, expected and actual).
ShardView open_shard(const std::string& path);
std::vector<int32_t> read_shard(const std::string& path);

// Throws "<path>: token <id> at position <i> is outside the vocabulary (vocab_size <V>)" for the
// first id >= vocab_size.
void validate_tokens(const ShardView& shard, int vocab_size);

// Expands shard specs: a file, a directory (every *.bin directly inside) or a glob(3) pattern.
// A spec that matches nothing is an error naming it. The result is sorted and deduplicated. A
// directory of the result that holds kPublishMarker (a build publishing, or killed doing it) is
// refused.
std::vector<std::string> resolve_shards(const std::vector<std::string>& specs);

// Streams tokens into out_dir/<prefix>_000000.bin, <prefix>_000001.bin, ..., cutting exactly every
// shard_tokens tokens, so callers that append fixed-size samples with shard_tokens a multiple of
// the sample size get shards that hold whole samples.
class ShardSequenceWriter {
 public:
  ShardSequenceWriter(std::string out_dir, std::string prefix, uint64_t shard_tokens);
  void append(const std::vector<int32_t>& tokens);
  // Flushes the last partial shard (writing one empty shard if nothing was appended, so a split
  // that was asked for always exists on disk) and returns every path written.
  std::vector<std::string> finish();
  uint64_t tokens_written() const { return total_; }

 private:
  void flush();
  std::string out_dir_, prefix_;
  uint64_t shard_tokens_;
  std::vector<int32_t> buffer_;
  std::vector<std::string> paths_;
  uint64_t total_ = 0;
};

// A dataset build into out_dir. The splits are written into a staging directory inside out_dir
// (staging_dir(), a .tmp-* name) and moved into place only by publish(), so a build that fails
// half-way (an unreadable input, a full disk) leaves out_dir's earlier dataset as it was. Also
// removes what a crashed build left (its staging directory and shard temporaries, where their
// writer is no longer alive).
class ShardBuild {
 public:
  explicit ShardBuild(const std::string& out_dir);

  const std::string& staging_dir() const { return staging_.path(); }
  // Moves the staged shards of both splits into out_dir (one rename each, replacing same-named
  // shards of an earlier build), rewrites the paths to their final names, and removes the
  // train_NNNNNN.bin / val_NNNNNN.bin files of an earlier, larger build that were not replaced.
  // Not atomic as a whole: kPublishMarker stands in out_dir until it has finished.
  void publish(std::vector<std::string>& train, std::vector<std::string>& val);

 private:
  std::string out_dir_;
  ckpt::StagedDir staging_;  // never committed: removed on destruction (empty after publish())
};

// The names a build publishes: <train|val>_NNNNNN.bin.
bool is_split_shard_name(const std::string& file_name);

// The file publish() holds in out_dir while it moves shards into place. One left behind means a
// build was killed half-way through publishing: out_dir may mix two builds' shards, and
// resolve_shards refuses it until a build completes there.
extern const char* const kPublishMarker;

}  // namespace lh::data
