// Evaluations shared by the trainer and `lighthouse eval`.
#pragma once
#include <vector>

#include "lighthouse/data/loader.h"
#include "lighthouse/model.h"

namespace lh {

// How many of `requested` micro-batches a validation pass over `val` scores: each window at most
// once (on this rank), so no more than the shards hold.
int validation_batches(const data::DataLoader& val, int requested);
// Mean next-token cross-entropy (nats) over validation_batches(val, batches) micro-batches from
// the start of `val`.
double validation_loss(LlamaModel& model, data::DataLoader& val, int batches);

struct PasskeyResult {
  int length = 0;
  double depth = 0.0;
  int samples = 0;
  int correct = 0;         // keys reproduced exactly by greedy decoding
  double digit_accuracy = 0.0;
};

// Greedy-decodes the key of `samples` passkey prompts of `length` tokens with the key at `depth`.
PasskeyResult passkey_accuracy(LlamaModel& model, int length, double depth, int samples, uint64_t seed);

// Index of the largest logit in each row (ties: the lowest index).
std::vector<int> greedy_tokens(const std::vector<float>& logits, int rows, int vocab);

}  // namespace lh
