// Non-owning views of device or host memory. Ops take views plus explicit dimensions (as in llm.c):
// the view carries the pointer, the element type and the element count, so that backends can
// check what they are handed; the shape lives in the op's arguments where it is documented.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace lh {

enum class DType { F32, F64, BF16, I32 };
enum class Device { CPU, CUDA };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::I32: return 4;
  }
  return 0;
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
  }
  return "?";
}

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  size_t numel = 0;

  size_t bytes() const { return numel * dtype_size(dtype); }
  // Typed access; throws when the element type is not T (a backend handed the wrong buffer).
  template <typename T> T* as() const {
    if (dtype != dtype_of<T>())
      throw std::logic_error(std::string("tensor holds ") + dtype_name(dtype) + ", asked as " +
                             dtype_name(dtype_of<T>()));
    return static_cast<T*>(data);
  }
  // A sub-view of n elements starting at element offset.
  Tensor slice(size_t offset, size_t n) const {
    if (offset + n > numel) throw std::out_of_range("Tensor::slice out of range");
    return Tensor{static_cast<char*>(data) + offset * dtype_size(dtype), dtype, n};
  }
};

}  // namespace lh
