// Shard files: writing (atomic), memory-mapped reading with validation, spec resolution.
#include "lighthouse/data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <set>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "lighthouse/checkpoint_dir.h"  // write_file_atomic

namespace fs = std::filesystem;

namespace lh::data {
namespace {

constexpr uint32_t kMaxU16Token = 0xFFFF;

std::runtime_error io_error(const std::string& what, const std::string& path) {
  return std::runtime_error(fmt::format("{}: {}: {}", path, what, std::strerror(errno)));
}

template <typename T>
std::vector<T> narrow_tokens(const std::vector<int32_t>& tokens) {
  return std::vector<T>(tokens.begin(), tokens.end());
}

}  // namespace

void write_shard(const std::string& path, const std::vector<int32_t>& tokens) {
  uint32_t max_id = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0)
      throw std::invalid_argument(fmt::format("{}: negative token id {} at position {}", path, tokens[i], i));
    max_id = std::max(max_id, static_cast<uint32_t>(tokens[i]));
  }
  const bool narrow = max_id <= kMaxU16Token;
  std::array<int32_t, kShardHeaderInts> header{};
  header[0] = narrow ? kShardMagicU16 : kShardMagicU32;
  header[1] = kShardVersion;
  // llm.c stores the count as int32; larger shards would not be readable by it (or by us).
  if (tokens.size() > static_cast<size_t>(INT32_MAX))
    throw std::invalid_argument(fmt::format("{}: {} tokens exceed the shard limit", path, tokens.size()));
  header[2] = static_cast<int32_t>(tokens.size());

  // Atomic, and safe when several processes write the same shard at once (the quickstart's ranks).
  if (narrow) {
    const auto data = narrow_tokens<uint16_t>(tokens);
    ckpt::write_file_atomic(path, {{header.data(), kShardHeaderBytes}, {data.data(), data.size() * sizeof(uint16_t)}});
  } else {
    ckpt::write_file_atomic(path, {{header.data(), kShardHeaderBytes}, {tokens.data(), tokens.size() * sizeof(int32_t)}});
  }
}

ShardView::~ShardView() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

ShardView::ShardView(ShardView&& o) noexcept { *this = std::move(o); }

ShardView& ShardView::operator=(ShardView&& o) noexcept {
  if (this != &o) {
    if (map_ != nullptr) ::munmap(map_, map_bytes_);
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    tokens_ = std::exchange(o.tokens_, nullptr);
    num_tokens_ = std::exchange(o.num_tokens_, 0);
    token_bytes_ = std::exchange(o.token_bytes_, 0);
  }
  return *this;
}

int32_t ShardView::operator[](uint64_t i) const {
  if (i >= num_tokens_)
    throw std::out_of_range(fmt::format("{}: token index {} >= {}", path_, i, num_tokens_));
  int32_t v;
  read(i, 1, &v);
  return v;
}

void ShardView::read(uint64_t begin, uint64_t count, int32_t* out) const {
  if (begin > num_tokens_ || count > num_tokens_ - begin)
    throw std::out_of_range(fmt::format("{}: range [{}, {}) exceeds {} tokens", path_, begin,
                                        begin + count, num_tokens_));
  // memcpy per element: the map is byte-addressed and x86/ARM are little-endian like the format.
  if (token_bytes_ == 2) {
    const unsigned char* p = tokens_ + begin * 2;
    for (uint64_t i = 0; i < count; ++i) {
      uint16_t v;
      std::memcpy(&v, p + i * 2, sizeof v);
      out[i] = v;
    }
  } else {
    std::memcpy(out, tokens_ + begin * 4, count * 4);
  }
}

size_t ShardView::will_need(uint64_t begin, uint64_t count) const {
  if (map_ == nullptr || begin >= num_tokens_ || count == 0) return 0;
  count = std::min(count, num_tokens_ - begin);
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const auto first = reinterpret_cast<uintptr_t>(tokens_ + begin * token_bytes_) & ~(page - 1);
  const auto last = reinterpret_cast<uintptr_t>(tokens_ + (begin + count) * token_bytes_);
  ::madvise(reinterpret_cast<void*>(first), last - first, MADV_WILLNEED);  // advisory: errors ignored
  return last - first;
}

uint32_t ShardView::max_token() const {
  uint32_t m = 0;
  if (token_bytes_ == 2) {
    const unsigned char* p = tokens_;
    for (uint64_t i = 0; i < num_tokens_; ++i) {
      uint16_t v;
      std::memcpy(&v, p + i * 2, sizeof v);
      m = std::max<uint32_t>(m, v);
    }
  } else {
    for (uint64_t i = 0; i < num_tokens_; ++i) {
      uint32_t v;
      std::memcpy(&v, tokens_ + i * 4, sizeof v);
      m = std::max(m, v);
    }
  }
  return m;
}

ShardView open_shard(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw io_error("cannot open shard", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw io_error("cannot stat shard", path);
  }
  const auto file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < kShardHeaderBytes) {
    ::close(fd);
    throw std::runtime_error(fmt::format("{}: file is {} bytes, smaller than the {}-byte shard header",
                                         path, file_bytes, kShardHeaderBytes));
  }
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);  // the mapping keeps the file referenced
  if (map == MAP_FAILED) throw io_error("mmap failed", path);

  ShardView view;
  view.path_ = path;
  view.map_ = map;
  view.map_bytes_ = file_bytes;
  int32_t header[3];
  std::memcpy(header, map, sizeof header);
  if (header[0] == kShardMagicU16) {
    view.token_bytes_ = 2;
  } else if (header[0] == kShardMagicU32) {
    view.token_bytes_ = 4;
  } else {
    throw std::runtime_error(fmt::format("{}: unknown shard magic {}: not an llm.c token shard (those start with {} or "
                                         "{}); text is made into shards with `lighthouse data text`",
                                         path, header[0], kShardMagicU16, kShardMagicU32));
  }
  if (header[1] != kShardVersion)
    throw std::runtime_error(fmt::format("{}: unsupported shard version {} (expected {})", path,
                                         header[1], kShardVersion));
  if (header[2] < 0)
    throw std::runtime_error(fmt::format("{}: negative token count {}", path, header[2]));
  const uint64_t expected = kShardHeaderBytes + uint64_t(header[2]) * view.token_bytes_;
  if (file_bytes != expected)
    throw std::runtime_error(fmt::format(
        "{}: size mismatch: header says {} tokens of {} bytes, so {} bytes expected, file has {} "
        "(truncated or corrupt shard)", path, header[2], view.token_bytes_, expected, file_bytes));
  view.num_tokens_ = uint64_t(header[2]);
  view.tokens_ = static_cast<const unsigned char*>(map) + kShardHeaderBytes;
  return view;
}

std::vector<int32_t> read_shard(const std::string& path) {
  const ShardView view = open_shard(path);
  std::vector<int32_t> tokens(view.size());
  view.read(0, view.size(), tokens.data());
  return tokens;
}

void validate_tokens(const ShardView& shard, int vocab_size) {
  if (vocab_size <= 0) throw std::invalid_argument(fmt::format("vocab_size must be positive, got {}", vocab_size));
  // One fast pass for the common valid case; the slow search only runs to report an error.
  if (shard.size() == 0 || shard.max_token() < static_cast<uint32_t>(vocab_size)) return;
  for (uint64_t i = 0; i < shard.size(); ++i) {
    const auto id = static_cast<uint32_t>(shard[i]);
    if (id >= static_cast<uint32_t>(vocab_size))
      throw std::runtime_error(fmt::format("{}: token {} at position {} is outside the vocabulary "
                                           "(vocab_size {})", shard.path(), id, i, vocab_size));
  }
}

ShardSequenceWriter::ShardSequenceWriter(std::string out_dir, std::string prefix, uint64_t shard_tokens)
    : out_dir_(std::move(out_dir)), prefix_(std::move(prefix)), shard_tokens_(shard_tokens) {
  if (shard_tokens_ == 0) throw std::invalid_argument("shard_tokens must be positive");
}

void ShardSequenceWriter::append(const std::vector<int32_t>& tokens) {
  size_t i = 0;
  while (i < tokens.size()) {
    const size_t take = std::min<uint64_t>(tokens.size() - i, shard_tokens_ - buffer_.size());
    buffer_.insert(buffer_.end(), tokens.begin() + i, tokens.begin() + i + take);
    i += take;
    total_ += take;
    if (buffer_.size() == shard_tokens_) flush();
  }
}

void ShardSequenceWriter::flush() {
  const std::string path =
      (fs::path(out_dir_) / fmt::format("{}_{:06d}.bin", prefix_, paths_.size())).string();
  write_shard(path, buffer_);
  paths_.push_back(path);
  buffer_.clear();
}

std::vector<std::string> ShardSequenceWriter::finish() {
  if (!buffer_.empty() || paths_.empty()) flush();
  return paths_;
}

namespace {
// The staging directory's final-name stem; with the shards' own prefixes, the temporaries a build
// writes (ckpt::remove_stale_temporaries cleans those of dead writers).
const std::string kStagingStem = "shard-build";
const std::vector<std::string> kBuildTemporaries = {kStagingStem, "train_", "val_"};
// Builds of one directory may run on several machines at once (a multi-node quickstart where the
// filesystem has no locks), and a live build touches its staging directory with every shard: one
// untouched for an hour is a crashed build's.
constexpr std::chrono::hours kCrashedBuildAge{1};
}  // namespace

bool is_split_shard_name(const std::string& file_name) {
  static const std::regex shape("(train|val)_[0-9]{6}\\.bin");
  return std::regex_match(file_name, shape);
}

ShardBuild::ShardBuild(const std::string& out_dir)
    : out_dir_(out_dir), staging_((fs::path(out_dir) / kStagingStem).string()) {
  // Leftovers of crashed builds; this build's own staging directory is live, so it stays.
  ckpt::remove_stale_temporaries(out_dir_, kBuildTemporaries, kCrashedBuildAge);
}

const char* const kPublishMarker = ".publishing";

void ShardBuild::publish(std::vector<std::string>& train, std::vector<std::string>& val) {
  const std::string marker = (fs::path(out_dir_) / kPublishMarker).string();
  ckpt::write_file_atomic(marker, "a data build is moving its shards here; if no build is running, it was killed "
                                  "half-way: run it again\n");
  std::set<std::string> published;
  for (std::vector<std::string>* split : {&train, &val})
    for (std::string& path : *split) {
      const fs::path final_path = fs::path(out_dir_) / fs::path(path).filename();
      fs::rename(path, final_path);
      path = final_path.string();
      published.insert(final_path.filename().string());
    }
  for (const auto& entry : fs::directory_iterator(out_dir_)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && is_split_shard_name(name) && !published.count(name)) fs::remove(entry.path());
  }
  ckpt::fsync_path(out_dir_);  // the shards are in place before the marker goes
  fs::remove(marker);
  ckpt::fsync_path(out_dir_);
}

}  // namespace lh::data
