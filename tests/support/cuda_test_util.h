// Helpers for the CUDA kernel tests: RAII device buffers, host-side bf16 rounding (bit patterns,
// round-to-nearest-even, the same rounding as __float2bfloat16_rn), random inputs and the error
// metric the tests report.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "cuda/cuda_check.h"
#include "lighthouse/rng.h"

namespace lh::testing {

// Device memory for n values of T, freed on scope exit. bf16 buffers are uploaded from and
// downloaded to host uint16_t bit patterns (see to_bf16_bits).
template <typename T> class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) { LH_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(1, n) * sizeof(T))); }
  template <typename H> explicit DeviceBuffer(const std::vector<H>& host) : DeviceBuffer(host.size()) {
    upload(host);
  }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  template <typename H> void upload(const std::vector<H>& host) {
    static_assert(sizeof(H) == sizeof(T), "host and device element sizes differ");
    LH_CUDA_CHECK(cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice));
  }
  template <typename H = T> std::vector<H> download() const {
    static_assert(sizeof(H) == sizeof(T), "host and device element sizes differ");
    LH_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<H> host(n_);
    LH_CUDA_CHECK(cudaMemcpy(host.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  // Fills every byte with 0xFF: NaN in bf16 and fp32, so an element a kernel forgot to write fails.
  void poison() { LH_CUDA_CHECK(cudaMemset(p_, 0xFF, std::max<size_t>(1, n_) * sizeof(T))); }

 private:
  T* p_ = nullptr;
  size_t n_;
};

inline uint16_t to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_bf16_bits(v[i]);
  return out;
}
inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = from_bf16_bits(v[i]);
  return out;
}

// Uniform in [lo, hi), already rounded to bf16 when `bf16` is set, so the CPU reference and the
// kernel see identical input values.
inline std::vector<float> random_values(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f, bool bf16 = true) {
  lh::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = lo + (hi - lo) * static_cast<float>(rng.uniform());
    if (bf16) x = from_bf16_bits(to_bf16_bits(x));
  }
  return v;
}

inline std::vector<int32_t> random_tokens(size_t n, int V, uint64_t seed) {
  lh::Rng rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng.below(static_cast<uint64_t>(V)));
  return t;
}

// max_i |got_i - ref_i| / (|ref_i| + floor * max_j |ref_j|): a relative error per element, with a
// floor so elements near zero (cancellations) are judged against the tensor's scale. A NaN or a
// size mismatch gives infinity.
inline double max_rel_err(const std::vector<float>& got, const std::vector<float>& ref, double floor = 1e-3) {
  if (got.size() != ref.size()) return INFINITY;
  double scale = 0.0;
  for (float r : ref) scale = std::max(scale, std::fabs(static_cast<double>(r)));
  double worst = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]) / (std::fabs(static_cast<double>(ref[i])) + floor * scale);
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

// Prints the error (the report quotes these lines) and returns it for a CHECK.
inline double report_err(const char* what, double err) {
  std::printf("[gpu-err] %-40s %.3g\n", what, err);
  return err;
}

}  // namespace lh::testing
