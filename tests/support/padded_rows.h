// Rows padded to a larger stride (the logits, ModelConfig::logits_row_stride): the unpadded part of
// a downloaded matrix, and how many padding entries are not zero (the contract says zeros).
#pragma once
#include <cstddef>
#include <vector>

namespace lh::testing {

template <typename T>
struct UnpaddedRows {
  std::vector<T> values;  // [rows, cols]
  size_t nonzero_padding = 0;
};

template <typename T>
UnpaddedRows<T> unpad_rows(const std::vector<T>& padded, size_t rows, size_t cols, size_t ld) {
  UnpaddedRows<T> out{std::vector<T>(rows * cols), 0};
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < ld; ++c)
      if (c < cols)
        out.values[r * cols + c] = padded[r * ld + c];
      else
        out.nonzero_padding += !(padded[r * ld + c] == T(0));  // NaN counts as nonzero
  return out;
}

}  // namespace lh::testing
