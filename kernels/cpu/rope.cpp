// Rotary position embedding, rotate-half convention (Hugging Face Llama).
#include <cmath>
#include <cstddef>
#include <vector>

#include "lighthouse/ops/cpu_reference.h"

namespace lh::cpu {

namespace {
// Rotates the Q and K heads of every token by `sign` * angle. The angles are computed in float
// as transformers does (inv_freq = 1 / theta^(2i/D), angle = float(t) * inv_freq), and the float
// angle is then widened to T, so float and double runs rotate by the same angles.
template <typename T>
void rope_rotate(T* qkv, int B, int Tlen, int H, int Hkv, int D, double theta, T sign) {
  const int half = D / 2;
  const int rotated_heads = H + Hkv;  // values are left untouched
  const size_t token_stride = static_cast<size_t>(H + 2 * Hkv) * D;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(D));

#pragma omp parallel
  {
    std::vector<T> cos_t(half), sin_t(half);
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < Tlen; ++t) {
        for (int i = 0; i < half; ++i) {
          const float angle = static_cast<float>(t) * inv_freq[i];
          cos_t[i] = std::cos(static_cast<T>(angle));
          sin_t[i] = sign * std::sin(static_cast<T>(angle));
        }
        T* tok = qkv + (static_cast<size_t>(b) * Tlen + t) * token_stride;
        for (int h = 0; h < rotated_heads; ++h) {
          T* x = tok + static_cast<size_t>(h) * D;
          for (int i = 0; i < half; ++i) {
            const T x0 = x[i], x1 = x[i + half];
            x[i] = x0 * cos_t[i] - x1 * sin_t[i];
            x[i + half] = x1 * cos_t[i] + x0 * sin_t[i];
          }
        }
      }
  }
}
}  // namespace

void rope_cos_sin_table(float* table, int Tlen, int D, double theta) {
  const int half = D / 2;
  for (int i = 0; i < half; ++i) {
    const float inv_freq = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(D));
    for (int t = 0; t < Tlen; ++t) {
      const float angle = static_cast<float>(t) * inv_freq;
      table[(static_cast<size_t>(t) * half + i) * 2] = std::cos(angle);
      table[(static_cast<size_t>(t) * half + i) * 2 + 1] = std::sin(angle);
    }
  }
}

template <typename T>
void rope_forward(T* qkv, int B, int Tlen, int H, int Hkv, int D, double theta) {
  rope_rotate(qkv, B, Tlen, H, Hkv, D, theta, T(1));
}

// A rotation is orthogonal, so its adjoint is the rotation by the opposite angle.
template <typename T>
void rope_backward(T* dqkv, int B, int Tlen, int H, int Hkv, int D, double theta) {
  rope_rotate(dqkv, B, Tlen, H, Hkv, D, theta, T(-1));
}

#define LH_INSTANTIATE(T)                                                     \
  template void rope_forward<T>(T*, int, int, int, int, int, double);        \
  template void rope_backward<T>(T*, int, int, int, int, int, double);
LH_INSTANTIATE(float)
LH_INSTANTIATE(double)
#undef LH_INSTANTIATE

}  // namespace lh::cpu
