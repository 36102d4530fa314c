#include "cli/token_file.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace lh::cli {

TokenBatch read_token_file(const std::string& path, int vocab_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open the token file");
  int32_t dims[2] = {0, 0};
  if (!in.read(reinterpret_cast<char*>(dims), sizeof dims) || dims[0] <= 0 || dims[1] <= 0)
    throw std::runtime_error(path + ": expected a header of two positive int32 (B, T)");
  const uint64_t count = uint64_t(dims[0]) * uint64_t(dims[1]);
  std::error_code ec;
  const uint64_t bytes = std::filesystem::file_size(path, ec);
  if (ec) throw std::runtime_error(path + ": cannot tell its size (" + ec.message() + "): give a regular file");
  if (bytes != sizeof dims + count * sizeof(int32_t))
    throw std::runtime_error(path + ": the header says " + std::to_string(dims[0]) + " x " + std::to_string(dims[1]) +
                             " tokens (" + std::to_string(sizeof dims + count * sizeof(int32_t)) +
                             " bytes with the header), but the file has " + std::to_string(bytes) + " bytes");
  TokenBatch t{dims[0], dims[1], std::vector<int32_t>(count)};
  if (!in.read(reinterpret_cast<char*>(t.ids.data()), std::streamsize(count * sizeof(int32_t))))
    throw std::runtime_error(path + ": cannot read " + std::to_string(count) + " tokens");
  for (size_t i = 0; i < t.ids.size(); ++i)
    if (t.ids[i] < 0 || t.ids[i] >= vocab_size)
      throw std::runtime_error(path + ": token " + std::to_string(t.ids[i]) + " at position " + std::to_string(i) +
                               " is outside the model's vocabulary [0, " + std::to_string(vocab_size) + ")");
  return t;
}

}  // namespace lh::cli
