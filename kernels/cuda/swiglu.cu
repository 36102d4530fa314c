// SwiGLU: out = silu(gate) * up, gate and up side by side in each [2F] row of gate_up.
#include "vec.cuh"

namespace lh::cuda {
namespace {
using namespace detail;

// 1 / (1 + e^-g); for very negative g, e^-g overflows to inf and the result is a clean 0.
__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + __expf(-g)); }

// One work item = 8 consecutive f of one row (vector path, F % 8 == 0) or one f.
// Bytes: N*2F*2 read + N*F*2 written.
template <bool kVector>
__global__ void swiglu_forward_kernel(bf16* out, const bf16* gate_up, int N, int F) {
  const int per_row = kVector ? F / kVec : F;
  const size_t total = static_cast<size_t>(N) * per_row;
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const size_t n = i / per_row;
    const int f = static_cast<int>(i - n * per_row) * (kVector ? kVec : 1);
    const bf16* g = gate_up + n * 2 * F + f;
    bf16* o = out + n * F + f;
    if constexpr (kVector) {
      float gv[8], uv[8];
      load8(gv, g);
      load8(uv, g + F);
#pragma unroll
      for (int j = 0; j < 8; ++j) gv[j] = gv[j] * sigmoid(gv[j]) * uv[j];
      store8(o, gv);
    } else {
      const float gv = __bfloat162float(g[0]), uv = __bfloat162float(g[F]);
      o[0] = __float2bfloat16(gv * sigmoid(gv) * uv);
    }
  }
}

// d/dg silu(g) = s + g s (1 - s), s = sigmoid(g).  dgate_up may alias gate_up: each item reads
// its inputs before writing the same indices.
// Bytes: N*F*2 (dout) + N*2F*2 (gate_up) read + N*2F*2 written.
template <bool kVector>
__global__ void swiglu_backward_kernel(bf16* dgate_up, const bf16* dout, const bf16* gate_up, int N, int F) {
  const int per_row = kVector ? F / kVec : F;
  const size_t total = static_cast<size_t>(N) * per_row;
  for (size_t i = global_thread(); i < total; i += grid_threads()) {
    const size_t n = i / per_row;
    const int f = static_cast<int>(i - n * per_row) * (kVector ? kVec : 1);
    const bf16* g = gate_up + n * 2 * F + f;
    const bf16* dy = dout + n * F + f;
    bf16* dg = dgate_up + n * 2 * F + f;
    if constexpr (kVector) {
      float gv[8], uv[8], dv[8];
      load8(gv, g);
      load8(uv, g + F);
      load8(dv, dy);
      float dgv[8], duv[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float s = sigmoid(gv[j]);
        dgv[j] = dv[j] * uv[j] * (s + gv[j] * s * (1.0f - s));
        duv[j] = dv[j] * (gv[j] * s);
      }
      store8(dg, dgv);
      store8(dg + F, duv);
    } else {
      const float gv = __bfloat162float(g[0]), uv = __bfloat162float(g[F]), dv = __bfloat162float(dy[0]);
      const float s = sigmoid(gv);
      dg[0] = __float2bfloat16(dv * uv * (s + gv * s * (1.0f - s)));
      dg[F] = __float2bfloat16(dv * (gv * s));
    }
  }
}
}  // namespace

void swiglu_forward(bf16* out, const bf16* gate_up, int N, int F, cudaStream_t s) {
  if (N <= 0 || F <= 0) return;
  const bool vec = F % kVec == 0 && aligned16(out) && aligned16(gate_up);
  const unsigned grid = grid_for(static_cast<size_t>(N) * (vec ? F / kVec : F), 256);
  if (vec)
    swiglu_forward_kernel<true><<<grid, 256, 0, s>>>(out, gate_up, N, F);
  else
    swiglu_forward_kernel<false><<<grid, 256, 0, s>>>(out, gate_up, N, F);
  LH_CUDA_CHECK_LAUNCH();
}

void swiglu_backward(bf16* dgate_up, const bf16* dout, const bf16* gate_up, int N, int F, cudaStream_t s) {
  if (N <= 0 || F <= 0) return;
  const bool vec = F % kVec == 0 && aligned16(dgate_up) && aligned16(dout) && aligned16(gate_up);
  const unsigned grid = grid_for(static_cast<size_t>(N) * (vec ? F / kVec : F), 256);
  if (vec)
    swiglu_backward_kernel<true><<<grid, 256, 0, s>>>(dgate_up, dout, gate_up, N, F);
  else
    swiglu_backward_kernel<false><<<grid, 256, 0, s>>>(dgate_up, dout, gate_up, N, F);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
