// Elementwise residual add, gradient accumulation and dtype conversions.
// Each kernel runs a grid-stride loop over 8-element vectors (16-byte bf16 accesses; two 16-byte
// float accesses) and finishes the n % 8 tail with scalar accesses; when a pointer is not 16-byte
// aligned the whole range takes the scalar loop. Every element is read and written at its own
// index, so out may alias an input.
#include "vec.cuh"

namespace lh::cuda {
namespace {
using namespace detail;

// Applies op(out_ptr, in_ptrs..., index, count) on vectors, then the tail element by element.
// VecOp handles 8 elements at element offset e; ScalarOp one element.
template <typename VecOp, typename ScalarOp>
__device__ __forceinline__ void vector_loop(size_t n, bool vec, VecOp vop, ScalarOp sop) {
  const size_t tid = global_thread(), stride = grid_threads();
  const size_t nvec = vec ? n / kVec : 0;
  for (size_t i = tid; i < nvec; i += stride) vop(i * kVec);
  for (size_t e = nvec * kVec + tid; e < n; e += stride) sop(e);
}

// Bytes: 2n*2 read + n*2 written.
__global__ void residual_kernel(bf16* out, const bf16* a, const bf16* b, size_t n, bool vec) {
  vector_loop(
      n, vec,
      [=](size_t e) {
        float x[8], y[8];
        load8(x, a + e);
        load8(y, b + e);
#pragma unroll
        for (int j = 0; j < 8; ++j) x[j] += y[j];
        store8(out + e, x);
      },
      [=](size_t e) { out[e] = __float2bfloat16(__bfloat162float(a[e]) + __bfloat162float(b[e])); });
}

// Bytes: n*4 read (f32) + n*2 written.
__global__ void f32_to_bf16_kernel(bf16* dst, const float* src, size_t n, bool vec) {
  vector_loop(
      n, vec,
      [=](size_t e) {
        float x[8];
        load8(x, src + e);
        store8(dst + e, x);
      },
      [=](size_t e) { dst[e] = __float2bfloat16(src[e]); });
}

// Bytes: n*2 read + n*4 written.
__global__ void bf16_to_f32_kernel(float* dst, const bf16* src, size_t n, bool vec) {
  vector_loop(
      n, vec,
      [=](size_t e) {
        float x[8];
        load8(x, src + e);
        store8(dst + e, x);
      },
      [=](size_t e) { dst[e] = __bfloat162float(src[e]); });
}

template <typename... P> bool all_aligned(const P*... p) { return (aligned16(p) && ...); }
}  // namespace

void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n, cudaStream_t s) {
  if (n == 0) return;
  const bool vec = all_aligned(out, a, b);
  residual_kernel<<<grid_for(vec ? n / kVec + 1 : n, 256), 256, 0, s>>>(out, a, b, n, vec);
  LH_CUDA_CHECK_LAUNCH();
}

// dst += src is residual_forward with out aliasing a (bytes: 2n*2 read + n*2 written).
void accumulate(bf16* dst, const bf16* src, size_t n, cudaStream_t s) { residual_forward(dst, dst, src, n, s); }

void convert_f32_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t s) {
  if (n == 0) return;
  const bool vec = all_aligned(dst, src);
  f32_to_bf16_kernel<<<grid_for(vec ? n / kVec + 1 : n, 256), 256, 0, s>>>(dst, src, n, vec);
  LH_CUDA_CHECK_LAUNCH();
}

void convert_bf16_to_f32(float* dst, const bf16* src, size_t n, cudaStream_t s) {
  if (n == 0) return;
  const bool vec = all_aligned(dst, src);
  bf16_to_f32_kernel<<<grid_for(vec ? n / kVec + 1 : n, 256), 256, 0, s>>>(dst, src, n, vec);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
