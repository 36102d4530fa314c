#include "lighthouse/evaluate.h"

#include <algorithm>

#include "lighthouse/data/synthetic.h"
#include "lighthouse/rng.h"

namespace lh {

int validation_batches(const data::DataLoader& val, int requested) {
  // Never wrap around: a small validation set is evaluated once, not repeated.
  return int(std::min<uint64_t>(uint64_t(std::max(requested, 1)), std::max<uint64_t>(1, val.batches_per_epoch())));
}

double validation_loss(LlamaModel& model, data::DataLoader& val, int batches) {
  const size_t n = size_t(val.micro_batch()) * val.seq_len();
  std::vector<int32_t> inputs(n), targets(n);
  val.reset();
  const int usable = validation_batches(val, batches);
  double sum = 0.0;
  for (int b = 0; b < usable; ++b) {
    val.next_batch(inputs.data(), targets.data());
    sum += model.forward(inputs.data(), targets.data(), val.micro_batch(), val.seq_len());
  }
  return sum / usable;
}

std::vector<int> greedy_tokens(const std::vector<float>& logits, int rows, int vocab) {
  std::vector<int> out(rows);
  for (int r = 0; r < rows; ++r) {
    const float* row = logits.data() + size_t(r) * vocab;
    out[r] = int(std::max_element(row, row + vocab) - row);  // first maximum: lowest index wins ties
  }
  return out;
}

PasskeyResult passkey_accuracy(LlamaModel& model, int length, double depth, int samples, uint64_t seed) {
  PasskeyResult res{length, depth, samples, 0, 0.0};
  Rng rng(seed);
  const int V = model.config().vocab_size;
  long digits_right = 0, digits_total = 0;
  for (int s = 0; s < samples; ++s) {
    const data::PasskeyPrompt p = data::make_passkey_prompt(length, depth, data::kDefaultPasskeyDigits, rng);
    std::vector<int32_t> context = p.prompt;
    bool all_right = true;
    // No KV cache: each decoded digit reruns the prefix. Evaluation lengths are modest on the CPU.
    for (size_t d = 0; d < p.answer.size(); ++d) {
      const int T = int(context.size());
      model.forward(context.data(), nullptr, 1, T);
      const std::vector<float> logits = model.logits_host();
      const int next = greedy_tokens(std::vector<float>(logits.end() - V, logits.end()), 1, V)[0];
      const bool right = next == p.answer[d];
      digits_right += right;
      all_right = all_right && right;
      context.push_back(next);
    }
    digits_total += long(p.answer.size());
    res.correct += all_right;
  }
  res.digit_accuracy = digits_total ? double(digits_right) / digits_total : 0.0;
  return res;
}

}  // namespace lh
