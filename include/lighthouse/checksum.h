// Fast non-cryptographic 64-bit checksum ("lh64") for detecting corrupted checkpoint files.
//
// Why not CRC32/FNV: CRC32 is only 32 bits and byte-wise FNV-1a runs at well under 1 GB/s, which
// would make verifying multi-GB checkpoints slow. lh64 runs four independent multiply-rotate lanes
// over 32-byte stripes (~5 cycles of dependency chain per 32 bytes), so it is memory-bound.
//
// Definition (so that it can be re-implemented elsewhere, e.g. in a Python verifier):
//   words are little-endian uint64 loads; K1..K4 are the constants in checksum.cpp.
//   lanes v0..v3 start at seed + K1*(i+1); for each full 32-byte stripe, lane i absorbs word i:
//     v = rotl64((v ^ w) * K1, 31)
//   Remaining full 8-byte words are absorbed into lane 0 in order, then the final 0..7 bytes
//   (zero-padded into a word, little-endian) likewise into lane 1 when any remain.
//   h = total_length * K2; for each lane i: h = rotl64((h ^ fmix(v_i)) * K3, 27) + K4
//   result = fmix(h ^ total_length), where fmix is the murmur3 64-bit finalizer.
// Every step is a bijection of the state given the other inputs, so changing any single byte is
// guaranteed to change the checksum (multi-byte changes collide with probability ~2^-64).
// Streaming (Hasher) and one-shot (checksum_bytes) give identical results for the same bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace lh {

class Hasher {
 public:
  explicit Hasher(uint64_t seed = 0);
  void update(const void* data, size_t n);
  // Does not modify the state: more update() calls may follow.
  uint64_t digest() const;

 private:
  uint64_t v_[4];
  unsigned char buf_[32];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

uint64_t checksum_bytes(const void* data, size_t n);
// Streams the file in large blocks (constant memory); throws std::runtime_error naming the file
// and the errno text on any I/O error.
uint64_t checksum_file(const std::string& path);
// 16 lowercase hex digits, the form stored in JSON manifests (JSON numbers lose 64-bit precision).
std::string checksum_hex(uint64_t h);

}  // namespace lh
