// The token files that `eval --logits-for` and `select` read: int32 B, int32 T, then B*T int32
// token ids (scripts/compare_hf.py writes them).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lh::cli {

struct TokenBatch {
  int batch = 0, seq_len = 0;
  std::vector<int32_t> ids;  // [batch][seq_len]
};

// Throws std::runtime_error naming the file if its header is not two positive int32, its size is
// not that of the header and B*T ids (checked before anything is allocated), or an id is outside
// [0, vocab_size).
TokenBatch read_token_file(const std::string& path, int vocab_size);

}  // namespace lh::cli
