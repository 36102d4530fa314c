// The model's three GEMM shapes through cuBLASLt: bf16 inputs, fp32 accumulation, with matmul
// descriptors, layouts and the algorithm cached per shape (building them costs far more than a
// small GEMM; the algorithm is tuned once per shape, cublaslt_tuning.cpp). Row-major semantics as
// in the CPU reference (weights [out, in]); ld >= OC is the row stride of the [N, OC] matrix (out,
// dout). cuBLASLt's fast kernels need OC itself a multiple of 8 in the forward and dx (a padded ld
// alone only helps dW), which is why the CUDA backend runs those at OC = ld on a zero-padded weight;
// a forward with ld > OC leaves the gap unwritten and is not tuned:
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
#include <string>
#include <tuple>

namespace lh::cuda {

class CublasLtMatmul {
 public:
  CublasLtMatmul();
  ~CublasLtMatmul();
  CublasLtMatmul(const CublasLtMatmul&) = delete;
  CublasLtMatmul& operator=(const CublasLtMatmul&) = delete;

  void forward(__nv_bfloat16* out, const __nv_bfloat16* x, const __nv_bfloat16* w, int N, int IC, int OC, int ld,
               cudaStream_t s);
  void forward_residual(__nv_bfloat16* out, const __nv_bfloat16* x, const __nv_bfloat16* w,
                        const __nv_bfloat16* residual, int N, int IC, int OC, cudaStream_t s);
  void backward_input(__nv_bfloat16* dx, const __nv_bfloat16* dout, const __nv_bfloat16* w, int N, int IC, int OC,
                      int ld, cudaStream_t s);
  void backward_weight(float* dw, const __nv_bfloat16* dout, const __nv_bfloat16* x, int N, int IC, int OC, int ld,
                       cudaStream_t s);

  // Which algorithm each new plan gets. kTuned (the default): the fastest of the heuristic's first
  // kTuneCandidates that reduce as its first choice does (same split-k and reduction scheme) and
  // give bit-identical output on the shape's first call's operands, timed on those operands
  // (cublaslt_tuning.cpp), so that which one wins does not change results; the heuristic's first
  // choice when LH_CUBLASLT_TUNE=0. A rank >= 0: that candidate of the heuristic's list
  // (benchmarks and tests; a rank beyond the list makes the next GEMM throw std::out_of_range).
  // Clears the cached plans.
  static constexpr int kTuned = -1;
  static constexpr int kTuneCandidates = 8;
  void set_algorithm_choice(int rank_or_tuned);
  static int default_choice();  // kTuned, or 0 under LH_CUBLASLT_TUNE=0 (1 or unset: kTuned)
  // The algorithm of the last GEMM run: its rank in the heuristic's list, cuBLASLt's config
  // attributes (enum values: config id, tile, stages, split-k and its reduction, swizzle, custom
  // option, inner and cluster shape) and the heuristic's estimate of the grid's waves.
  std::string last_algorithm() const;
  // How the last GEMM's plan was tuned: each candidate's time, or why it was left out.
  std::string last_tuning() const;

  struct Key {
    bool trans_a, trans_b, fp32_out;
    bool accumulate;  // beta = 1 (C is read), so a plan is tuned with the epilogue it runs
    int m, n, k, lda, ldb, ldc;
    bool operator<(const Key& o) const {
      return std::tie(trans_a, trans_b, fp32_out, accumulate, m, n, k, lda, ldb, ldc) <
             std::tie(o.trans_a, o.trans_b, o.fp32_out, o.accumulate, o.m, o.n, o.k, o.lda, o.ldb, o.ldc);
    }
  };
  struct Plan;

 private:
  // Column-major D[m, n] = op(A) op(B) (+ C where key.accumulate); C and D share one layout (C
  // may be D).
  void run(const Key& key, const void* a, const void* b, const void* c, void* d, cudaStream_t s);
  std::unique_ptr<Plan> build_plan(const Key& key, const void* a, const void* b, const void* c, void* d,
                                   cudaStream_t s);
  // Picks plan.rank among the candidates (cublaslt_tuning.cpp); may use d as scratch.
  void tune(Plan& plan, const Key& key, const void* a, const void* b, const void* c, void* d, cudaStream_t s);
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  int choice_ = kTuned;
  const Plan* last_plan_ = nullptr;
};

}  // namespace lh::cuda
