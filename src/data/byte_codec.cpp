#include "lighthouse/data/byte_codec.h"

#include <fmt/format.h>

namespace lh::data {

std::vector<int32_t> encode_bytes(const std::string& text) {
  std::vector<int32_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

std::string decode_bytes(const std::vector<int32_t>& tokens) {
  std::string out;
  for (const int32_t t : tokens) {
    if (t >= 0 && t < kByteVocab) out.push_back(static_cast<char>(t));
    else if (t == kEndOfDocument) out += "<|eod|>";
    else out += fmt::format("<|{}|>", t);
  }
  return out;
}

}  // namespace lh::data
