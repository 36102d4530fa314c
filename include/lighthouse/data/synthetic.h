// Deterministic synthetic byte-level datasets: passkey retrieval, multi-query associative recall
// (MQAR) and a toy language. Every sample is exactly `length` tokens and ends with kEndOfDocument,
// so with seq_len + 1 == length the loader's windows coincide with samples.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lighthouse/data/shard.h"
#include "lighthouse/rng.h"

namespace lh::data {

enum class SyntheticTask { Passkey, Mqar, Toy };
// "passkey" | "mqar" | "toy"; throws std::invalid_argument naming the accepted values.
SyntheticTask parse_synthetic_task(const std::string& name);
const char* synthetic_task_name(SyntheticTask task);

// ---- passkey retrieval ----------------------------------------------------------------------
// Sample layout: filler, "The pass key is K. Remember it. ", filler,
// "What is the pass key? The pass key is " [end of prompt], K [answer], ".", EOD.
struct PasskeyPrompt {
  std::vector<int32_t> prompt;  // everything up to and including the final "The pass key is "
  std::vector<int32_t> answer;  // the key's digits
  int key_offset = 0;           // token index where the key sentence starts
};
constexpr int kDefaultPasskeyDigits = 5;
constexpr int kMaxPasskeyDigits = 18;  // keys are drawn as 64-bit integers
// Smallest `length` that fits the fixed text for key_digits.
int passkey_min_length(int key_digits);
// depth in [0, 1] is the fraction of the filler placed before the key sentence; depth < 0 draws
// it uniformly per call. prompt + answer + "." + EOD is exactly `length` tokens.
PasskeyPrompt make_passkey_prompt(int length, double depth, int key_digits, Rng& rng);
std::vector<int32_t> passkey_sample(const PasskeyPrompt& p);  // prompt + answer + "." + EOD

// ---- multi-query associative recall -----------------------------------------------------------
// Layout: "abc=xyz def=uvw ... " then spaces padding to the exact length, "\n", then queries
// "def?uvw abc?xyz ..." (a random subset of the keys in random order), EOD. Keys are distinct.
constexpr int kMqarKeyLen = 3;
constexpr int kMqarValueLen = 3;
struct MqarSample {
  std::vector<int32_t> tokens;
  std::vector<std::pair<int, int>> answers;  // (start, length) of each queried value
};
// num_pairs == 0 picks the most pairs that fit when every key is queried; num_queries == 0
// queries every key. Throws when the requested pairs and queries do not fit in `length`.
MqarSample make_mqar_sample(int length, int num_pairs, int num_queries, Rng& rng);

// ---- toy language ------------------------------------------------------------------------------
// Sentences from a small probabilistic grammar (about 100 words, subject-verb agreement,
// punctuation, paragraphs). Its byte stream is far more predictable than its unigram entropy
// suggests, which makes it the quickstart's "does training work" dataset.
std::string toy_text(uint64_t min_bytes, Rng& rng);
std::vector<int32_t> toy_sample(int length, Rng& rng);  // length - 1 bytes of text, then EOD

// Unigram (order-0) entropy of a token sequence in BITS per token; 0 for an empty sequence.
double unigram_entropy_bits(const std::vector<int32_t>& tokens);

// ---- dataset files -------------------------------------------------------------------------------
struct SyntheticOptions {
  SyntheticTask task = SyntheticTask::Toy;
  int length = 257;  // tokens per sample (= seq_len + 1)
  uint64_t train_samples = 1000;
  uint64_t val_samples = 100;
  double depth = -1.0;  // passkey only; < 0 = uniform random per sample
  int key_digits = kDefaultPasskeyDigits;
  int mqar_pairs = 0;    // 0 = automatic
  int mqar_queries = 0;  // 0 = every key
  uint64_t seed = 1;
  uint64_t shard_tokens = kDefaultShardTokens;  // rounded down to whole samples (at least one)
};
struct SyntheticStats {
  uint64_t train_tokens = 0, val_tokens = 0;
  std::vector<std::string> train_shards, val_shards;
};
// Writes out_dir/train_NNNNNN.bin and out_dir/val_NNNNNN.bin (removing stale ones first). Train
// and val draw from independent streams derived from seed, so they are reproducible separately.
SyntheticStats generate_synthetic(const SyntheticOptions& options, const std::string& out_dir);

}  // namespace lh::data
