// The model's three GEMM shapes through cuBLASLt: bf16 inputs, fp32 accumulation, with matmul
// descriptors, layouts and the heuristic's algorithm cached per shape (building them costs far
// more than a small GEMM). Row-major semantics as in the CPU reference (weights [out, in]):
//   forward:  out[N, OC]  = x[N, IC] @ W^T                (bf16 out)
//             out[N, OC]  = x[N, IC] @ W^T + residual     (bf16, the add in the fp32 epilogue)
//   dx:       dx[N, IC]   = dout[N, OC] @ W               (bf16 out)
//   dweight:  dW[OC, IC] += dout^T @ x                    (fp32 out, accumulated: beta = 1)
#pragma once
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <tuple>

namespace lh::cuda {

class CublasLtMatmul {
 public:
  CublasLtMatmul();
  ~CublasLtMatmul();
  CublasLtMatmul(const CublasLtMatmul&) = delete;
  CublasLtMatmul& operator=(const CublasLtMatmul&) = delete;

  void forward(__nv_bfloat16* out, const __nv_bfloat16* x, const __nv_bfloat16* w, int N, int IC, int OC,
               cudaStream_t s);
  void forward_residual(__nv_bfloat16* out, const __nv_bfloat16* x, const __nv_bfloat16* w,
                        const __nv_bfloat16* residual, int N, int IC, int OC, cudaStream_t s);
  void backward_input(__nv_bfloat16* dx, const __nv_bfloat16* dout, const __nv_bfloat16* w, int N, int IC, int OC,
                      cudaStream_t s);
  void backward_weight(float* dw, const __nv_bfloat16* dout, const __nv_bfloat16* x, int N, int IC, int OC,
                       cudaStream_t s);

  struct Key {
    bool trans_a, trans_b, fp32_out;
    int m, n, k, lda, ldb, ldc;
    bool operator<(const Key& o) const {
      return std::tie(trans_a, trans_b, fp32_out, m, n, k, lda, ldb, ldc) <
             std::tie(o.trans_a, o.trans_b, o.fp32_out, o.m, o.n, o.k, o.lda, o.ldb, o.ldc);
    }
  };
  struct Plan;

 private:
  // Column-major D[m, n] = op(A) op(B) + beta C; C and D share one layout (C may be D, or unused
  // when beta = 0).
  void run(const Key& key, const void* a, const void* b, const void* c, void* d, float beta, cudaStream_t s);
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace lh::cuda
