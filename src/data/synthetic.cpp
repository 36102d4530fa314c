// Synthetic tasks (passkey retrieval, MQAR) and writing synthetic datasets to shards.
#include "lighthouse/data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "lighthouse/data/byte_codec.h"

namespace lh::data {
namespace {

constexpr int kLetters = 26;
const std::vector<std::string> kFiller = {"The grass is green. ", "The sky is blue. ",
                                          "The sun is yellow. ", "Here we go. ",
                                          "There and back again. "};
const char* const kKeyIntro = "The pass key is ";
const char* const kKeyOutro = ". Remember it. ";
const char* const kQuestion = "What is the pass key? The pass key is ";
const char* const kAnswerEnd = ".";

// Exactly `bytes` bytes of filler sentences; a remainder shorter than every sentence becomes
// spaces so that the text stays made of whole sentences.
std::string filler(size_t bytes, Rng& rng) {
  std::string out;
  while (true) {
    std::vector<const std::string*> fits;
    for (const auto& s : kFiller)
      if (s.size() <= bytes - out.size()) fits.push_back(&s);
    if (fits.empty()) break;
    out += *fits[rng.below(fits.size())];
  }
  out.append(bytes - out.size(), ' ');
  return out;
}

std::string random_letters(int n, Rng& rng) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + rng.below(kLetters)));
  return s;
}

size_t fixed_passkey_bytes(int key_digits) {
  return std::string(kKeyIntro).size() + key_digits + std::string(kKeyOutro).size() +
         std::string(kQuestion).size() + key_digits + std::string(kAnswerEnd).size() + 1;  // + EOD
}

}  // namespace

SyntheticTask parse_synthetic_task(const std::string& name) {
  if (name == "passkey") return SyntheticTask::Passkey;
  if (name == "mqar") return SyntheticTask::Mqar;
  if (name == "toy") return SyntheticTask::Toy;
  throw std::invalid_argument(fmt::format("unknown synthetic task '{}' (expected passkey, mqar or toy)", name));
}

const char* synthetic_task_name(SyntheticTask task) {
  switch (task) {
    case SyntheticTask::Passkey: return "passkey";
    case SyntheticTask::Mqar: return "mqar";
    case SyntheticTask::Toy: return "toy";
  }
  return "?";
}

int passkey_min_length(int key_digits) { return static_cast<int>(fixed_passkey_bytes(key_digits)); }

PasskeyPrompt make_passkey_prompt(int length, double depth, int key_digits, Rng& rng) {
  if (key_digits < 1 || key_digits > kMaxPasskeyDigits)
    throw std::invalid_argument(fmt::format("key_digits must be in [1, {}], got {}", kMaxPasskeyDigits, key_digits));
  if (length < passkey_min_length(key_digits))
    throw std::invalid_argument(fmt::format("passkey length {} is below the minimum {} for {}-digit keys",
                                            length, passkey_min_length(key_digits), key_digits));
  if (depth > 1.0) throw std::invalid_argument(fmt::format("passkey depth must be <= 1, got {}", depth));
  uint64_t lowest = 1;  // smallest key_digits-digit number, so keys never start with 0
  for (int i = 1; i < key_digits; ++i) lowest *= 10;
  const std::string key = std::to_string(lowest + rng.below(9 * lowest));
  if (depth < 0.0) depth = rng.uniform();

  const size_t filler_bytes = static_cast<size_t>(length) - fixed_passkey_bytes(key_digits);
  const auto before = static_cast<size_t>(std::llround(depth * double(filler_bytes)));
  std::string text = filler(before, rng);
  PasskeyPrompt p;
  p.key_offset = static_cast<int>(text.size());
  text += kKeyIntro + key + kKeyOutro;
  text += filler(filler_bytes - before, rng);
  text += kQuestion;
  p.prompt = encode_bytes(text);
  p.answer = encode_bytes(key);
  return p;
}

std::vector<int32_t> passkey_sample(const PasskeyPrompt& p) {
  std::vector<int32_t> s = p.prompt;
  s.insert(s.end(), p.answer.begin(), p.answer.end());
  for (const char c : std::string(kAnswerEnd)) s.push_back(static_cast<unsigned char>(c));
  s.push_back(kEndOfDocument);
  return s;
}

MqarSample make_mqar_sample(int length, int num_pairs, int num_queries, Rng& rng) {
  constexpr int kItem = kMqarKeyLen + 1 + kMqarValueLen + 1;  // "abc=xyz " or "abc?xyz "
  constexpr int kOverhead = 2;                                 // "\n" and EOD
  constexpr int kMaxKeys = kLetters * kLetters * kLetters;     // distinct 3-letter keys
  static_assert(kMqarKeyLen == 3, "kMaxKeys assumes 3-letter keys");
  if (num_pairs < 0 || num_queries < 0) throw std::invalid_argument("mqar pairs/queries must be >= 0");
  const bool fill_pairs = num_pairs == 0, fill_queries = num_queries == 0;  // 0: as many as fit
  if (fill_pairs) num_pairs = num_queries > 0 ? (length - kOverhead - num_queries * kItem) / kItem
                                              : (length - kOverhead) / (2 * kItem);
  if (fill_queries) num_queries = num_pairs;
  if (num_pairs < 1 || num_pairs > kMaxKeys || num_queries > num_pairs ||
      (num_pairs + num_queries) * kItem + kOverhead > length) {
    if (num_pairs < 1 && fill_pairs && fill_queries)
      throw std::invalid_argument(fmt::format("mqar: length {} holds not even one pair and its query (each item "
                                              "takes {} tokens, plus {})", length, kItem, kOverhead));
    throw std::invalid_argument(fmt::format("mqar: {} pairs and {} queries do not fit in length {} "
                                            "(each item takes {} tokens)", num_pairs, num_queries, length, kItem));
  }
  std::vector<std::string> keys, values;
  std::set<std::string> used;
  while (static_cast<int>(keys.size()) < num_pairs) {
    std::string k = random_letters(kMqarKeyLen, rng);
    if (!used.insert(k).second) continue;  // keys must be unique for recall to be well defined
    keys.push_back(k);
    values.push_back(random_letters(kMqarValueLen, rng));
  }
  std::string text;
  for (int i = 0; i < num_pairs; ++i) text += keys[i] + "=" + values[i] + " ";
  text.append(static_cast<size_t>(length - kOverhead - (num_pairs + num_queries) * kItem), ' ');
  text += "\n";
  // Queries: a random subset in random order (the first num_queries of a Fisher-Yates shuffle).
  std::vector<int> order(num_pairs);
  for (int i = 0; i < num_pairs; ++i) order[i] = i;
  MqarSample s;
  for (int q = 0; q < num_queries; ++q) {
    std::swap(order[q], order[q + rng.below(num_pairs - q)]);
    text += keys[order[q]] + "?";
    s.answers.emplace_back(static_cast<int>(text.size()), kMqarValueLen);
    text += values[order[q]] + " ";
  }
  s.tokens = encode_bytes(text);
  s.tokens.push_back(kEndOfDocument);
  return s;
}

double unigram_entropy_bits(const std::vector<int32_t>& tokens) {
  if (tokens.empty()) return 0.0;
  std::map<int32_t, uint64_t> counts;
  for (const int32_t t : tokens) ++counts[t];
  double h = 0.0;
  for (const auto& [token, c] : counts) {
    const double p = double(c) / double(tokens.size());
    h -= p * std::log2(p);
  }
  return h;
}

namespace {

std::vector<int32_t> make_sample(const SyntheticOptions& o, Rng& rng) {
  switch (o.task) {
    case SyntheticTask::Passkey: return passkey_sample(make_passkey_prompt(o.length, o.depth, o.key_digits, rng));
    case SyntheticTask::Mqar: return make_mqar_sample(o.length, o.mqar_pairs, o.mqar_queries, rng).tokens;
    case SyntheticTask::Toy: return toy_sample(o.length, rng);
  }
  throw std::logic_error("unhandled synthetic task");
}

std::vector<std::string> write_split(const SyntheticOptions& o, const std::string& out_dir,
                                     const std::string& prefix, uint64_t samples, uint64_t seed,
                                     uint64_t* tokens) {
  // Whole samples per shard: windows never cross shards, so a split sample would be lost.
  const uint64_t per_shard = std::max<uint64_t>(1, o.shard_tokens / o.length) * o.length;
  ShardSequenceWriter writer(out_dir, prefix, per_shard);
  Rng rng(seed);
  for (uint64_t i = 0; i < samples; ++i) writer.append(make_sample(o, rng));
  *tokens = writer.tokens_written();
  return writer.finish();
}

}  // namespace

SyntheticStats generate_synthetic(const SyntheticOptions& o, const std::string& out_dir) {
  if (o.length < 2) throw std::invalid_argument(fmt::format("sample length must be >= 2, got {}", o.length));
  if (o.train_samples == 0) throw std::invalid_argument("train_samples must be positive");
  Rng rng(0);
  make_sample(o, rng);  // fail on bad options before touching out_dir
  // Independent seeds for the two splits: val stays the same whatever train_samples is.
  Rng master(o.seed);
  const uint64_t train_seed = master.next_u64();
  const uint64_t val_seed = master.next_u64();
  ShardBuild build(out_dir);
  SyntheticStats st;
  st.train_shards = write_split(o, build.staging_dir(), "train", o.train_samples, train_seed, &st.train_tokens);
  if (o.val_samples > 0)
    st.val_shards = write_split(o, build.staging_dir(), "val", o.val_samples, val_seed, &st.val_tokens);
  build.publish(st.train_shards, st.val_shards);
  return st;
}

}  // namespace lh::data
