// Text files -> byte-level train/val shards.
#include "lighthouse/data/text_shards.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>

#include "lighthouse/checkpoint_dir.h"
#include "lighthouse/data/byte_codec.h"
#include "lighthouse/data/shard.h"

namespace fs = std::filesystem;

namespace lh::data {

namespace {

bool is_inside(const fs::path& path, const fs::path& dir) {
  const auto [end, _] = std::mismatch(dir.begin(), dir.end(), path.begin(), path.end());
  return end == dir.end();
}

// Whether `doc` is what a build writes into out_dir: a shard of a previous build
// (out_dir/<train|val>_NNNNNN.bin) or anything under a temporary (.tmp-*) entry of out_dir.
// Rebuilding with out_dir inside an input directory must not ingest those as text; the user's own
// files in or under out_dir are inputs like any other.
bool is_build_output(const fs::path& doc, const fs::path& out) {
  if (!is_inside(doc, out)) return false;
  const fs::path rel = doc.lexically_relative(out);
  if (rel.empty() || rel == ".") return false;
  const std::string first = rel.begin()->string();
  if (first.rfind(ckpt::temporary_prefix(), 0) == 0) return true;
  return std::distance(rel.begin(), rel.end()) == 1 && is_split_shard_name(first);
}

// Input files, excluding what a build writes into out_dir (is_build_output).
std::vector<std::string> collect_documents(const std::vector<std::string>& inputs,
                                           const std::string& out_dir) {
  fs::path out = fs::weakly_canonical(out_dir);
  if (!out.has_filename()) out = out.parent_path();  // "dir/" has an empty last element
  std::vector<std::string> docs;
  for (const auto& input : inputs) {
    if (fs::is_directory(input)) {
      for (const auto& e : fs::recursive_directory_iterator(input))
        if (e.is_regular_file()) docs.push_back(e.path().string());
    } else if (fs::is_regular_file(input)) {
      docs.push_back(input);
    } else if (fs::exists(input)) {
      throw std::runtime_error(fmt::format("{}: not a regular file or a directory", input));
    } else {
      throw std::runtime_error(fmt::format("{}: no such file or directory", input));
    }
  }
  // Sorted so that the train/val assignment does not depend on directory iteration order.
  docs.erase(std::remove_if(docs.begin(), docs.end(),
                            [&](const std::string& d) { return is_build_output(fs::weakly_canonical(d), out); }),
             docs.end());
  std::sort(docs.begin(), docs.end());
  docs.erase(std::unique(docs.begin(), docs.end()), docs.end());
  return docs;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot read", path));
  try {
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  } catch (const std::exception& e) {  // the stream's own message names no file
    throw std::runtime_error(fmt::format("{}: read error ({})", path, e.what()));
  }
}

std::vector<int32_t> document_tokens(const std::string& bytes) {
  std::vector<int32_t> tokens = encode_bytes(bytes);
  tokens.push_back(kEndOfDocument);
  return tokens;
}

// How many of n items go to val: round(n * fraction), at least one when fraction > 0 and n >= 2,
// and never all of them (training needs data too).
uint64_t val_count(uint64_t n, double fraction) {
  if (fraction <= 0.0 || n < 2) return 0;
  const auto k = static_cast<uint64_t>(std::llround(static_cast<double>(n) * fraction));
  return std::clamp<uint64_t>(k, 1, n - 1);
}

// Item i is val when the running quota floor((i+1)k/n) steps up: exactly k items, evenly spread.
bool is_val(uint64_t i, uint64_t n, uint64_t k) { return (i + 1) * k / n > i * k / n; }

}  // namespace

TextShardStats build_text_shards(const std::vector<std::string>& inputs, const std::string& out_dir,
                                 double val_fraction, uint64_t shard_tokens) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    throw std::invalid_argument(fmt::format("val_fraction must be in [0, 1), got {}", val_fraction));
  const std::vector<std::string> docs = collect_documents(inputs, out_dir);
  if (docs.empty()) throw std::runtime_error("no input documents found");

  ShardBuild build(out_dir);
  ShardSequenceWriter train(build.staging_dir(), "train", shard_tokens);
  ShardSequenceWriter val(build.staging_dir(), "val", shard_tokens);
  TextShardStats stats;
  stats.documents = docs.size();

  const auto read_document = [&](const std::string& path) {
    std::string bytes = read_file(path);
    if (bytes.find('\0') != std::string::npos) stats.binary_documents.push_back(path);
    return bytes;
  };
  if (docs.size() == 1) {
    // A single document cannot be assigned whole; its tail becomes the val document instead.
    const std::string bytes = read_document(docs[0]);
    const uint64_t k = val_count(bytes.size(), val_fraction);
    train.append(document_tokens(bytes.substr(0, bytes.size() - k)));
    stats.train_documents = 1;
    if (k > 0) {
      val.append(document_tokens(bytes.substr(bytes.size() - k)));
      stats.val_documents = 1;
    }
  } else {
    const uint64_t k = val_count(docs.size(), val_fraction);
    for (uint64_t i = 0; i < docs.size(); ++i) {
      const bool to_val = is_val(i, docs.size(), k);
      (to_val ? val : train).append(document_tokens(read_document(docs[i])));
      ++(to_val ? stats.val_documents : stats.train_documents);
    }
  }
  stats.train_shards = train.finish();
  stats.train_tokens = train.tokens_written();
  if (stats.val_documents > 0) {
    stats.val_shards = val.finish();
    stats.val_tokens = val.tokens_written();
  }
  build.publish(stats.train_shards, stats.val_shards);
  return stats;
}

}  // namespace lh::data
