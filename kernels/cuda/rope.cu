// Rotary position embedding (rotate-half), in place on the Q and K heads of the fused qkv.
#include <cmath>

#include "vec.cuh"

namespace lh::cuda {
namespace {
using namespace detail;

// One work item = (token, rotated head, group of 8 pairs) on the vector path (half % 8 == 0), or
// one pair on the scalar path. The pair (x[i], x[i + D/2]) is read with two 16-byte loads from the
// two halves of the head, the 8 (cos, sin) pairs with four 16-byte loads of the table.
// Bytes: B*T*(H+Hkv)*D*2 read + the same written (values untouched) + T*D/2*8 table (L2-resident).
template <bool kVector>
__global__ void rope_kernel(bf16* qkv, const float* cos_sin, int T, int H, int Hkv, int D, size_t tokens,
                            float sign) {
  const int half = D / 2;
  const int groups = kVector ? half / kVec : half;
  const int heads = H + Hkv;  // values are left untouched
  const size_t token_stride = static_cast<size_t>(H + 2 * Hkv) * D;
  const size_t total = tokens * heads * groups;
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const int g = static_cast<int>(i % groups);
    const size_t rest = i / groups;
    const int h = static_cast<int>(rest % heads);
    const size_t tok = rest / heads;
    const int t = static_cast<int>(tok % T);
    bf16* x = qkv + tok * token_stride + static_cast<size_t>(h) * D;
    const float* cs = cos_sin + (static_cast<size_t>(t) * half) * 2;
    if constexpr (kVector) {
      const int p = g * kVec;
      float x0[8], x1[8], tab[16];
      load8(x0, x + p);
      load8(x1, x + half + p);
      load8(*reinterpret_cast<float(*)[8]>(tab), cs + 2 * p);
      load8(*reinterpret_cast<float(*)[8]>(tab + 8), cs + 2 * p + 8);
      float y0[8], y1[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float c = tab[2 * j], s = sign * tab[2 * j + 1];
        y0[j] = x0[j] * c - x1[j] * s;
        y1[j] = x1[j] * c + x0[j] * s;
      }
      store8(x + p, y0);
      store8(x + half + p, y1);
    } else {
      const float x0 = __bfloat162float(x[g]), x1 = __bfloat162float(x[g + half]);
      const float c = cs[2 * g], s = sign * cs[2 * g + 1];
      x[g] = __float2bfloat16(x0 * c - x1 * s);
      x[g + half] = __float2bfloat16(x1 * c + x0 * s);
    }
  }
}

void rope_launch(bf16* qkv, const float* cos_sin, int B, int T, int H, int Hkv, int D, float sign, cudaStream_t s) {
  if (B <= 0 || T <= 0 || H + Hkv <= 0 || D < 2) return;
  const int half = D / 2;
  // Head offsets are multiples of D: with half % 8 == 0 every 8-pair group starts 16-byte aligned.
  const bool vec = half % kVec == 0 && aligned16(qkv) && aligned16(cos_sin);
  const size_t tokens = static_cast<size_t>(B) * T;
  const size_t items = tokens * (H + Hkv) * (vec ? half / kVec : half);
  const unsigned grid = grid_for(items, 256);
  if (vec)
    rope_kernel<true><<<grid, 256, 0, s>>>(qkv, cos_sin, T, H, Hkv, D, tokens, sign);
  else
    rope_kernel<false><<<grid, 256, 0, s>>>(qkv, cos_sin, T, H, Hkv, D, tokens, sign);
  LH_CUDA_CHECK_LAUNCH();
}
}  // namespace

void rope_forward(bf16* qkv, const float* cos_sin, int B, int T, int H, int Hkv, int D, cudaStream_t s) {
  rope_launch(qkv, cos_sin, B, T, H, Hkv, D, 1.0f, s);
}

// A rotation is orthogonal: its adjoint rotates by the opposite angle.
void rope_backward(bf16* dqkv, const float* cos_sin, int B, int T, int H, int Hkv, int D, cudaStream_t s) {
  rope_launch(dqkv, cos_sin, B, T, H, Hkv, D, -1.0f, s);
}

}  // namespace lh::cuda
