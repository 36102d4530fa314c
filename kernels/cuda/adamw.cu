// Optimizer kernels: gradient-norm reduction (fp64, fixed order), clipping scale, AdamW step.
#include <cmath>

#include "vec.cuh"

namespace lh::cuda {
namespace {
using namespace detail;

constexpr int kSsThreads = 256;
constexpr int kSsMaxBlocks = 1024;

// The partition of the input depends on n only: G = sum_squares_blocks(n) blocks of 256 threads,
// thread (b, t) takes 4-element groups j = b*256 + t, + G*256, ... in increasing order; each
// block sums its threads by a fixed shared-memory tree, and a single block sums the G partials by
// the same tree. Same bits for the same input on any run (and any GPU).
unsigned sum_squares_blocks(size_t n) {
  const size_t groups = (n + 3) / 4;
  return static_cast<unsigned>(std::max<size_t>(1, std::min<size_t>(kSsMaxBlocks, (groups + kSsThreads - 1) / kSsThreads)));
}

template <int kThreads>
__device__ __forceinline__ double block_tree_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  return sh[0];
}

// Bytes: n*4 read (+ G*8 partials).
__global__ __launch_bounds__(kSsThreads) void sum_squares_partial(double* partial, const float* x, size_t n,
                                                                 bool vec) {
  __shared__ double sh[kSsThreads];
  const size_t groups = (n + 3) / 4, stride = static_cast<size_t>(gridDim.x) * kSsThreads;
  double acc = 0.0;
  const size_t full = vec ? n / 4 : 0;  // complete, aligned 4-groups: the float4 fast path
  size_t j = static_cast<size_t>(blockIdx.x) * kSsThreads + threadIdx.x;
#pragma unroll 4
  for (; j < full; j += stride) {  // unrolled: several 16-byte loads in flight per thread
    const float4 f = reinterpret_cast<const float4*>(x)[j];
    acc += static_cast<double>(f.x) * f.x;
    acc += static_cast<double>(f.y) * f.y;
    acc += static_cast<double>(f.z) * f.z;
    acc += static_cast<double>(f.w) * f.w;
  }
  for (; j < groups; j += stride) {  // same groups, same order, scalar loads
    const size_t e = 4 * j;
    for (size_t k = e; k < e + 4 && k < n; ++k) acc += static_cast<double>(x[k]) * x[k];
  }
  const double total = block_tree_sum<kSsThreads>(acc, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ __launch_bounds__(kSsMaxBlocks) void sum_squares_final(double* result, const double* partial,
                                                                  unsigned blocks) {
  __shared__ double sh[kSsMaxBlocks];
  const double v = threadIdx.x < blocks ? partial[threadIdx.x] : 0.0;
  const double total = block_tree_sum<kSsMaxBlocks>(v, sh);
  if (threadIdx.x == 0) *result = total;
}

// Bytes: n*4 read + n*4 written.
__global__ void scale_kernel(float* x, size_t n, float scale, bool vec) {
  const size_t tid = global_thread(), stride = grid_threads();
  const size_t nvec = vec ? n / 4 : 0;
  for (size_t i = tid; i < nvec; i += stride) {
    float4 f = reinterpret_cast<float4*>(x)[i];
    f.x *= scale; f.y *= scale; f.z *= scale; f.w *= scale;
    reinterpret_cast<float4*>(x)[i] = f;
  }
  for (size_t e = nvec * 4 + tid; e < n; e += stride) x[e] *= scale;
}

struct AdamParams {
  float lr, beta1, beta2, eps, weight_decay, bias1, bias2, grad_scale;
};

__device__ __forceinline__ float adam_one(float& p, float g_raw, float& m, float& v, const AdamParams& a) {
  const float g = g_raw * a.grad_scale;  // clipping, folded in: saves a read+write pass over grad
  m = a.beta1 * m + (1.0f - a.beta1) * g;
  v = a.beta2 * v + (1.0f - a.beta2) * g * g;
  const float mhat = m / a.bias1, vhat = v / a.bias2;
  p = p - a.lr * (mhat / (sqrtf(vhat) + a.eps) + a.weight_decay * p);
  return p;
}

// One pass: reads p, g, m, v (16 B/element), writes p, m, v (12 B) and the bf16 copy (2 B):
// 30 bytes per element (28 without the copy). float4 accesses, scalar tail.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, bf16* copy, size_t n,
                             AdamParams a, bool vec) {
  const size_t tid = global_thread(), stride = grid_threads();
  const size_t nvec = vec ? n / 4 : 0;
  for (size_t i = tid; i < nvec; i += stride) {
    float4 p4 = reinterpret_cast<float4*>(param)[i];
    const float4 g4 = reinterpret_cast<const float4*>(grad)[i];
    float4 m4 = reinterpret_cast<float4*>(m)[i];
    float4 v4 = reinterpret_cast<float4*>(v)[i];
    adam_one(p4.x, g4.x, m4.x, v4.x, a);
    adam_one(p4.y, g4.y, m4.y, v4.y, a);
    adam_one(p4.z, g4.z, m4.z, v4.z, a);
    adam_one(p4.w, g4.w, m4.w, v4.w, a);
    reinterpret_cast<float4*>(param)[i] = p4;
    reinterpret_cast<float4*>(m)[i] = m4;
    reinterpret_cast<float4*>(v)[i] = v4;
    if (copy) {  // 4 bf16 = one 8-byte store
      __nv_bfloat162 lo = __floats2bfloat162_rn(p4.x, p4.y), hi = __floats2bfloat162_rn(p4.z, p4.w);
      uint2 raw;
      raw.x = *reinterpret_cast<unsigned*>(&lo);
      raw.y = *reinterpret_cast<unsigned*>(&hi);
      reinterpret_cast<uint2*>(copy)[i] = raw;
    }
  }
  for (size_t e = nvec * 4 + tid; e < n; e += stride) {
    const float p = adam_one(param[e], grad[e], m[e], v[e], a);
    if (copy) copy[e] = __float2bfloat16(p);
  }
}
}  // namespace

size_t sum_squares_scratch_bytes(size_t n) { return sum_squares_blocks(n) * sizeof(double); }

void sum_squares(double* result, const float* x, size_t n, void* scratch, cudaStream_t s) {
  double* partial = static_cast<double*>(scratch);
  const unsigned blocks = sum_squares_blocks(n);
  sum_squares_partial<<<blocks, kSsThreads, 0, s>>>(partial, x, n, aligned16(x));
  LH_CUDA_CHECK_LAUNCH();
  sum_squares_final<<<1, kSsMaxBlocks, 0, s>>>(result, partial, blocks);
  LH_CUDA_CHECK_LAUNCH();
}

void scale_inplace(float* x, size_t n, float scale, cudaStream_t s) {
  if (n == 0) return;
  const bool vec = aligned16(x);
  scale_kernel<<<grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, s>>>(x, n, scale, vec);
  LH_CUDA_CHECK_LAUNCH();
}

void adamw_update(float* param, const float* grad, float* m, float* v, bf16* compute_copy, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, int step, float grad_scale,
                  cudaStream_t s) {
  if (n == 0) return;
  // Bias corrections in double on the host, as the reference does, rounded once to float.
  const AdamParams a{lr,
                     beta1,
                     beta2,
                     eps,
                     weight_decay,
                     static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), step)),
                     static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), step)),
                     grad_scale};
  const bool vec = aligned16(param) && aligned16(grad) && aligned16(m) && aligned16(v) &&
                   (compute_copy == nullptr || (reinterpret_cast<uintptr_t>(compute_copy) & 7u) == 0);
  adamw_kernel<<<grid_for(vec ? n / 4 + 1 : n, 256), 256, 0, s>>>(param, grad, m, v, compute_copy, n, a, vec);
  LH_CUDA_CHECK_LAUNCH();
}

}  // namespace lh::cuda
