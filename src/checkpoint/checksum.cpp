// lh64 checksum; the algorithm is specified in include/lighthouse/checksum.h.
#include "lighthouse/checksum.h"

#include <cstdio>
#include <cstring>
#include <vector>

#include "checkpoint/posix_io.h"

namespace lh {
namespace {

// Odd 64-bit constants (odd so that multiplication is a bijection mod 2^64).
constexpr uint64_t K1 = 0x9E3779B97F4A7C15ull;  // 2^64 / golden ratio
constexpr uint64_t K2 = 0xC2B2AE3D27D4EB4Full;
constexpr uint64_t K3 = 0xD6E8FEB86659FD93ull;
constexpr uint64_t K4 = 0x165667B19E3779F9ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Little-endian load; memcpy keeps unaligned access legal and compiles to a single mov on x86/ARM.
// The byte order is fixed so that checksums agree across machines; all our targets are LE.
inline uint64_t load64(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "lh64 assumes a little-endian host");
  return w;
}

inline uint64_t absorb(uint64_t v, uint64_t w) { return rotl((v ^ w) * K1, 31); }

// murmur3 fmix64: a bijective avalanche so that every lane bit affects every output bit.
inline uint64_t fmix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h;
}

// Hot loop: four independent chains let the CPU overlap the multiplies.
inline void stripes(uint64_t v[4], const unsigned char* p, size_t nstripes) {
  uint64_t a = v[0], b = v[1], c = v[2], d = v[3];
  for (size_t i = 0; i < nstripes; ++i, p += 32) {
    a = absorb(a, load64(p));
    b = absorb(b, load64(p + 8));
    c = absorb(c, load64(p + 16));
    d = absorb(d, load64(p + 24));
  }
  v[0] = a, v[1] = b, v[2] = c, v[3] = d;
}

}  // namespace

Hasher::Hasher(uint64_t seed) {
  for (int i = 0; i < 4; ++i) v_[i] = seed + K1 * static_cast<uint64_t>(i + 1);
}

void Hasher::update(const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
  total_ += n;
  if (buffered_ > 0) {  // complete a partial stripe left by the previous call
    const size_t take = n < 32 - buffered_ ? n : 32 - buffered_;
    std::memcpy(buf_ + buffered_, p, take);
    buffered_ += take;
    p += take;
    n -= take;
    if (buffered_ < 32) return;
    stripes(v_, buf_, 1);
    buffered_ = 0;
  }
  stripes(v_, p, n / 32);
  p += (n / 32) * 32;
  buffered_ = n % 32;
  if (buffered_ > 0) std::memcpy(buf_, p, buffered_);
}

uint64_t Hasher::digest() const {
  uint64_t v[4] = {v_[0], v_[1], v_[2], v_[3]};
  size_t i = 0;
  for (; i + 8 <= buffered_; i += 8) v[0] = absorb(v[0], load64(buf_ + i));
  if (i < buffered_) {
    unsigned char last[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(last, buf_ + i, buffered_ - i);
    v[1] = absorb(v[1], load64(last));
  }
  uint64_t h = total_ * K2;
  for (int l = 0; l < 4; ++l) h = rotl((h ^ fmix(v[l])) * K3, 27) + K4;
  return fmix(h ^ total_);
}

uint64_t checksum_bytes(const void* data, size_t n) {
  Hasher h;
  h.update(data, n);
  return h.digest();
}

uint64_t checksum_file(const std::string& path) {
  detail::Fd fd = detail::open_or_throw(path, O_RDONLY);
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);  // a hint only; failure is harmless
#endif
  // 4 MiB blocks: large enough to amortize syscalls, small enough to stay in L2/L3 while hashing.
  std::vector<unsigned char> block(4u << 20);
  Hasher h;
  for (;;) {
    const ssize_t r = ::read(fd.get(), block.data(), block.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      detail::throw_errno("read failed for", path, errno);
    }
    if (r == 0) break;
    h.update(block.data(), static_cast<size_t>(r));
  }
  return h.digest();
}

std::string checksum_hex(uint64_t h) {
  char s[17];
  std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(h));
  return s;
}

}  // namespace lh
