#include "cublaslt_matmul.h"

#include <stdexcept>
#include <string>

#include "cuda_check.h"

namespace lh::cuda {
namespace {
// cuBLASLt's recommended workspace for Hopper; larger lets it pick split-K/stream-K kernels.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt error ") + std::to_string(int(s)) + " in " + what);
}
#define LH_CUBLAS_CHECK(call) check((call), #call)
}  // namespace

struct CublasLtMatmul::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
  }
};

CublasLtMatmul::CublasLtMatmul() {
  LH_CUBLAS_CHECK(cublasLtCreate(&handle_));
  LH_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
}

CublasLtMatmul::~CublasLtMatmul() {
  plans_.clear();
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

void CublasLtMatmul::run(const Key& key, const void* a, const void* b, const void* c, void* d, float beta,
                         cudaStream_t s) {
  auto& plan = plans_[key];
  if (!plan) {
    plan = std::make_unique<Plan>();
    LH_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = key.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = key.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    LH_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LH_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    // Stored shapes (column-major): A is m x k unless transposed (then k x m); same for B.
    LH_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_16BF, key.trans_a ? key.k : key.m,
                                               key.trans_a ? key.m : key.k, key.lda));
    LH_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_16BF, key.trans_b ? key.n : key.k,
                                               key.trans_b ? key.k : key.n, key.ldb));
    LH_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&plan->c, key.fp32_out ? CUDA_R_32F : CUDA_R_16BF, key.m, key.n, key.ldc));
    cublasLtMatmulPreference_t pref = nullptr;
    LH_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    LH_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &kWorkspaceBytes, sizeof kWorkspaceBytes));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                                             pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
      throw std::runtime_error("cuBLASLt: no algorithm for m=" + std::to_string(key.m) + " n=" +
                               std::to_string(key.n) + " k=" + std::to_string(key.k));
    plan->algo = result.algo;
  }
  const float alpha = 1.0f;
  LH_CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &alpha, a, plan->a, b, plan->b, &beta, c, plan->c, d, plan->c,
                                 &plan->algo, workspace_, kWorkspaceBytes, s));
}

// Row-major X[r, c] is column-major X^T[c, r] with leading dimension c; the three products below
// are the row-major formulas rewritten on the transposes.
void CublasLtMatmul::forward(__nv_bfloat16* out, const __nv_bfloat16* x, const __nv_bfloat16* w, int N, int IC,
                             int OC, cudaStream_t s) {
  // out^T[OC, N] = W[OC, IC] (stored as W^T, so transposed) * x^T[IC, N]
  run(Key{true, false, false, OC, N, IC, IC, IC, OC}, w, x, out, out, 0.0f, s);
}

void CublasLtMatmul::forward_residual(__nv_bfloat16* out, const __nv_bfloat16* x, const __nv_bfloat16* w,
                                      const __nv_bfloat16* residual, int N, int IC, int OC, cudaStream_t s) {
  // As forward, with residual^T[OC, N] as C: the sum is formed in fp32 and rounded to bf16 once.
  run(Key{true, false, false, OC, N, IC, IC, IC, OC}, w, x, residual, out, 1.0f, s);
}

void CublasLtMatmul::backward_input(__nv_bfloat16* dx, const __nv_bfloat16* dout, const __nv_bfloat16* w, int N,
                                    int IC, int OC, cudaStream_t s) {
  // dx^T[IC, N] = W^T[IC, OC] * dout^T[OC, N]
  run(Key{false, false, false, IC, N, OC, IC, OC, IC}, w, dout, dx, dx, 0.0f, s);
}

void CublasLtMatmul::backward_weight(float* dw, const __nv_bfloat16* dout, const __nv_bfloat16* x, int N, int IC,
                                     int OC, cudaStream_t s) {
  // dW^T[IC, OC] += x^T[IC, N] * dout[N, OC]  (dout^T stored, so transposed)
  run(Key{false, true, true, IC, OC, N, IC, OC, IC}, x, dout, dw, dw, 1.0f, s);
}

}  // namespace lh::cuda
