// Elementwise residual add, gradient accumulation and dtype conversions (one strided).
// Each kernel runs a grid-stride loop over vectors (8 bf16 = 16 bytes for bf16-only kernels;
// 4 elements = one float4 + 8 bytes of bf16 for conversions) and finishes the n % 8 tail with scalar accesses; when a pointer is not 16-byte
// aligned the whole range takes the scalar loop. Every element is read and written at its own
// index, so out may alias an input.
#include "vec.cuh"

namespace lh::cuda {
namespace {
using namespace detail;

// Runs vop on W-element vectors (element offset e), then sop on the n % W tail elements.
template <int W = kVec, typename VecOp, typename ScalarOp>
__device__ __forceinline__ void vector_loop(size_t n, bool vec, VecOp vop, ScalarOp sop) {
  const size_t tid = global_thread(), stride = grid_threads();
  const size_t nvec = vec ? n / W : 0;
  for (size_t i = tid; i < nvec; i += stride) vop(i * W);
  for (size_t e = nvec * W + tid; e < n; e += stride) sop(e);
}

// 4 bf16 <-> one float4: the fp32 side then moves 16 bytes per lane in one coalesced 512-byte
// warp access (8 floats per lane as two float4 would interleave the two stores' sectors).
__device__ __forceinline__ float4 load4(const bf16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);  // words, not a bf16 view: see unpack8
  return make_float4(bf16_low(raw.x), bf16_high(raw.x), bf16_low(raw.y), bf16_high(raw.y));
}
__device__ __forceinline__ void store4(bf16* p, float4 f) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(f.x, f.y), hi = __floats2bfloat162_rn(f.z, f.w);
  uint2 raw;
  raw.x = *reinterpret_cast<unsigned*>(&lo);
  raw.y = *reinterpret_cast<unsigned*>(&hi);
  *reinterpret_cast<uint2*>(p) = raw;
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
  vector_loop<4>(
      n, vec, [=](size_t e) { store4(dst + e, *reinterpret_cast<const float4*>(src + e)); },
      [=](size_t e) { dst[e] = __float2bfloat16(src[e]); });
}

// Bytes: n*2 read + n*4 written.
__global__ void bf16_to_f32_kernel(float* dst, const bf16* src, size_t n, bool vec) {
  vector_loop<4>(
      n, vec, [=](size_t e) { *reinterpret_cast<float4*>(dst + e) = load4(src + e); },
      [=](size_t e) { dst[e] = __bfloat162float(src[e]); });
}

// Bytes: n*2 + n*4 read + n*4 written.
__global__ void accumulate_f32_kernel(float* dst, const bf16* src, size_t n, bool vec) {
  vector_loop<4>(
      n, vec,
      [=](size_t e) {
        float4 d = *reinterpret_cast<const float4*>(dst + e);
        const float4 x = load4(src + e);
        d.x += x.x, d.y += x.y, d.z += x.z, d.w += x.w;
        *reinterpret_cast<float4*>(dst + e) = d;
      },
      [=](size_t e) { dst[e] += __bfloat162float(src[e]); });
}

// dst[b, h, t, :] (element strides sb, sh, st; unit stride along d) = src[b, t, h, :] (compact):
// one thread per 8-element chunk. Bytes: n*4 read + n*2 written.
__global__ void f32_to_bf16_strided_kernel(bf16* dst, const float* src, int64_t T, int H, int D, int64_t sb,
                                           int64_t sh, int64_t st, size_t chunks) {
  const int per_row = H * D / kVec;
  for (size_t i = global_thread(); i < chunks; i += grid_threads()) {
    const size_t row = i / per_row;  // b * T + t
    const int c = int(i % per_row), h = c * kVec / D, d = c * kVec % D;
    const int64_t b = int64_t(row / T), t = int64_t(row % T);
    float x[8];
    load8(x, src + i * kVec);
    store8(dst + b * sb + h * sh + t * st + d, x);
  }
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
  f32_to_bf16_kernel<<<grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, s>>>(dst, src, n, vec);
  LH_CUDA_CHECK_LAUNCH();
}

void accumulate_f32(float* dst, const bf16* src, size_t n, cudaStream_t s) {
  if (n == 0) return;
  const bool vec = all_aligned(dst, src);
  accumulate_f32_kernel<<<grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, s>>>(dst, src, n, vec);
  LH_CUDA_CHECK_LAUNCH();
}

void convert_f32_to_bf16_strided(bf16* dst, const float* src, int B, int64_t T, int H, int D, int64_t sb, int64_t sh,
                                 int64_t st, cudaStream_t s) {
  const size_t chunks = size_t(B) * T * H * D / kVec;
  if (chunks == 0) return;
  f32_to_bf16_strided_kernel<<<grid_for(chunks, 256), 256, 0, s>>>(dst, src, T, H, D, sb, sh, st, chunks);
  LH_CUDA_CHECK_LAUNCH();
}

void convert_bf16_to_f32(float* dst, const bf16* src, size_t n, cudaStream_t s) {
  if (n == 0) return;
  const bool vec = all_aligned(dst, src);
  bf16_to_f32_kernel<<<grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, s>>>(dst, src, n, vec);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
