#include "lighthouse/host_io.h"

#include <cstring>
#include <stdexcept>

namespace lh {

uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x7fffffu)) return uint16_t((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // ties to even
  return uint16_t((bits + rounding) >> 16);
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

std::vector<double> download_doubles(Backend& be, const Tensor& t) {
  std::vector<double> out(t.numel);
  switch (t.dtype) {
    case DType::F64: be.copy_to_host(out.data(), t); break;
    case DType::F32: {
      std::vector<float> f(t.numel);
      be.copy_to_host(f.data(), t);
      out.assign(f.begin(), f.end());
      break;
    }
    case DType::BF16: {
      std::vector<uint16_t> h(t.numel);
      be.copy_to_host(h.data(), t);
      for (size_t i = 0; i < h.size(); ++i) out[i] = bf16_to_float(h[i]);
      break;
    }
    default: throw std::invalid_argument(std::string("download_doubles: unsupported dtype ") + dtype_name(t.dtype));
  }
  return out;
}

std::vector<float> download_floats(Backend& be, const Tensor& t) {
  if (t.dtype == DType::F32) {
    std::vector<float> f(t.numel);
    be.copy_to_host(f.data(), t);
    return f;
  }
  const std::vector<double> d = download_doubles(be, t);
  return std::vector<float>(d.begin(), d.end());
}

void upload_doubles(Backend& be, Tensor t, const std::vector<double>& values) {
  if (values.size() != t.numel) throw std::invalid_argument("upload_doubles: size mismatch");
  switch (t.dtype) {
    case DType::F64: be.copy_from_host(t, values.data()); break;
    case DType::F32: {
      std::vector<float> f(values.begin(), values.end());
      be.copy_from_host(t, f.data());
      break;
    }
    case DType::BF16: {
      std::vector<uint16_t> h(values.size());
      for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_bf16(float(values[i]));
      be.copy_from_host(t, h.data());
      break;
    }
    default: throw std::invalid_argument(std::string("upload_doubles: unsupported dtype ") + dtype_name(t.dtype));
  }
}

}  // namespace lh
