// The toy language: a small probabilistic grammar over ~110 words. Word choices are Zipf-weighted
// and sentences obey agreement rules, so the byte stream has much lower conditional entropy than
// its unigram entropy; a tiny model learning it is a cheap end-to-end sanity check.
#include <cctype>
#include <stdexcept>
#include <string>
#include <vector>

#include "lighthouse/data/byte_codec.h"
#include "lighthouse/data/synthetic.h"

namespace lh::data {
namespace {

// Each entry: singular form, plural form (verbs: third-person singular, base form).
struct Pair { const char* one; const char* many; };

const std::vector<Pair> kNouns = {
    {"cat", "cats"},         {"dog", "dogs"},       {"bird", "birds"},     {"child", "children"},
    {"man", "men"},          {"woman", "women"},    {"fox", "foxes"},      {"mouse", "mice"},
    {"farmer", "farmers"},   {"teacher", "teachers"}, {"king", "kings"},   {"horse", "horses"},
    {"fish", "fish"},        {"tree", "trees"},     {"river", "rivers"},   {"house", "houses"},
    {"book", "books"},       {"apple", "apples"},   {"owl", "owls"},       {"boat", "boats"}};
const std::vector<Pair> kTransitive = {
    {"sees", "see"},     {"likes", "like"},     {"chases", "chase"}, {"finds", "find"},
    {"eats", "eat"},     {"watches", "watch"},  {"helps", "help"},   {"follows", "follow"},
    {"carries", "carry"}, {"loves", "love"}};
const std::vector<Pair> kIntransitive = {{"sleeps", "sleep"}, {"runs", "run"},   {"sings", "sing"},
                                         {"waits", "wait"},   {"laughs", "laugh"}, {"swims", "swim"}};
const std::vector<const char*> kDetOne = {"the", "a", "this", "that", "every", "my", "one"};
const std::vector<const char*> kDetMany = {"the", "these", "those", "some", "many", "two", "my"};
const std::vector<const char*> kAdjectives = {"small", "big", "old", "young", "red", "green",
                                              "happy", "sad", "quiet", "loud", "quick", "slow"};
const std::vector<const char*> kAdverbs = {"quickly", "slowly", "often", "today", "again", "quietly"};
const std::vector<const char*> kPrepositions = {"near", "under", "behind", "with", "in"};
const std::vector<const char*> kConjunctions = {"and", "but", "because"};

// Probabilities of the optional grammar branches.
constexpr double kSingularProb = 0.6;
constexpr double kAdjectiveProb = 0.3;
constexpr double kTransitiveProb = 0.65;
constexpr double kAdverbProb = 0.4;
constexpr double kPrepPhraseProb = 0.25;
constexpr double kCompoundProb = 0.2;
constexpr double kQuestionProb = 0.1;
constexpr double kExclamationProb = 0.05;
constexpr double kParagraphBreakProb = 0.2;

// Zipf-weighted index in [0, n): P(i) proportional to 1 / (i + 1).
size_t zipf(size_t n, Rng& rng) {
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += 1.0 / double(i + 1);
  double u = rng.uniform() * total;
  for (size_t i = 0; i < n; ++i) {
    u -= 1.0 / double(i + 1);
    if (u < 0.0) return i;
  }
  return n - 1;
}

template <typename T>
const T& pick(const std::vector<T>& v, Rng& rng) { return v[zipf(v.size(), rng)]; }

bool chance(double p, Rng& rng) { return rng.uniform() < p; }

bool starts_with_vowel(const std::string& w) {
  return !w.empty() && std::string("aeiou").find(w[0]) != std::string::npos;
}

std::string noun_phrase(bool singular, Rng& rng) {
  std::string det = singular ? pick(kDetOne, rng) : pick(kDetMany, rng);
  std::string rest;
  if (chance(kAdjectiveProb, rng)) rest = std::string(pick(kAdjectives, rng)) + " ";
  const Pair& noun = pick(kNouns, rng);
  rest += singular ? noun.one : noun.many;
  if (det == "a" && starts_with_vowel(rest)) det = "an";  // article agreement
  return det + " " + rest;
}

std::string prep_phrase(Rng& rng) {
  return std::string(pick(kPrepositions, rng)) + " " + noun_phrase(chance(kSingularProb, rng), rng);
}

std::string clause(Rng& rng) {
  const bool singular = chance(kSingularProb, rng);
  std::string s = noun_phrase(singular, rng) + " ";
  if (chance(kTransitiveProb, rng)) {
    const Pair& v = pick(kTransitive, rng);
    s += std::string(singular ? v.one : v.many) + " " + noun_phrase(chance(kSingularProb, rng), rng);
  } else {
    const Pair& v = pick(kIntransitive, rng);
    s += singular ? v.one : v.many;
    if (chance(kAdverbProb, rng)) s += std::string(" ") + pick(kAdverbs, rng);
  }
  if (chance(kPrepPhraseProb, rng)) s += " " + prep_phrase(rng);
  return s;
}

std::string sentence(Rng& rng) {
  std::string s;
  if (chance(kQuestionProb, rng)) {
    // Questions use do-support: "does" + singular subject + base-form verb.
    const bool singular = chance(kSingularProb, rng);
    const Pair& v = pick(kTransitive, rng);
    s = std::string(singular ? "does " : "do ") + noun_phrase(singular, rng) + " " + v.many + " " +
        noun_phrase(chance(kSingularProb, rng), rng) + "?";
  } else {
    s = clause(rng);
    if (chance(kCompoundProb, rng)) s += std::string(", ") + pick(kConjunctions, rng) + " " + clause(rng);
    s += chance(kExclamationProb, rng) ? "!" : ".";
  }
  s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

}  // namespace

std::string toy_text(uint64_t min_bytes, Rng& rng) {
  std::string text;
  while (text.size() < min_bytes) {
    text += sentence(rng);
    text += chance(kParagraphBreakProb, rng) ? "\n\n" : " ";
  }
  return text;
}

std::vector<int32_t> toy_sample(int length, Rng& rng) {
  if (length < 2) throw std::invalid_argument("toy sample length must be at least 2");
  const auto text_bytes = static_cast<uint64_t>(length - 1);
  std::vector<int32_t> tokens = encode_bytes(toy_text(text_bytes, rng).substr(0, text_bytes));
  tokens.push_back(kEndOfDocument);
  return tokens;
}

}  // namespace lh::data
