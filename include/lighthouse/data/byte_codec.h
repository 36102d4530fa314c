// The byte-level codec shared by the text and synthetic generators and by evaluators: a byte is
// its own token id (0-255), kEndOfDocument (256) ends a document.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "lighthouse/data/shard.h"  // kByteVocab, kEndOfDocument

namespace lh::data {

std::vector<int32_t> encode_bytes(const std::string& text);
// Inverse of encode_bytes; kEndOfDocument is rendered as "<|eod|>", other ids >= 256 as "<|id|>".
std::string decode_bytes(const std::vector<int32_t>& tokens);

}  // namespace lh::data
