#include "cublaslt_matmul.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "cublaslt_plan.h"
#include "cuda_check.h"

namespace lh::cuda {

int CublasLtMatmul::default_choice() {
  const char* env = std::getenv("LH_CUBLASLT_TUNE");
  const std::string value = env ? env : "";
  if (value.empty() || value == "1") return kTuned;
  if (value == "0") return 0;
  throw std::invalid_argument("LH_CUBLASLT_TUNE: '" + value + "' is not 0 or 1");
}

CublasLtMatmul::CublasLtMatmul() : choice_(default_choice()) {
  LH_CUBLAS_CHECK(cublasLtCreate(&handle_));
  LH_CUDA_CHECK(cudaMalloc(&workspace_, kCublasLtWorkspaceBytes));
}

CublasLtMatmul::~CublasLtMatmul() {
  plans_.clear();
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

std::unique_ptr<CublasLtMatmul::Plan> CublasLtMatmul::build_plan(const Key& key, const void* a, const void* b,
                                                                 const void* c, void* d, cudaStream_t s) {
  auto plan = std::make_unique<Plan>();
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
                                                       &kCublasLtWorkspaceBytes, sizeof kCublasLtWorkspaceBytes));
  plan->candidates.resize(choice_ == kTuned ? kTuneCandidates : size_t(choice_) + 1);
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->c, plan->c,
                                                           pref, int(plan->candidates.size()),
                                                           plan->candidates.data(), &found);
  cublasLtMatmulPreferenceDestroy(pref);
  const std::string shape =
      "m=" + std::to_string(key.m) + " n=" + std::to_string(key.n) + " k=" + std::to_string(key.k);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) throw std::runtime_error("cuBLASLt: no algorithm for " + shape);
  plan->candidates.resize(size_t(found));
  if (choice_ == kTuned) {
    tune(*plan, key, a, b, c, d, s);
  } else {
    if (found <= choice_)
      throw std::out_of_range("cuBLASLt: the heuristic offers " + std::to_string(found) + " algorithms for " + shape +
                              ", none of rank " + std::to_string(choice_));
    plan->rank = choice_;
  }
  return plan;
}

void CublasLtMatmul::run(const Key& key, const void* a, const void* b, const void* c, void* d, cudaStream_t s) {
  auto& plan = plans_[key];
  if (!plan) {
    try {
      plan = build_plan(key, a, b, c, d, s);
    } catch (...) {
      plans_.erase(key);  // no half-built plan stays cached
      throw;
    }
  }
  last_plan_ = plan.get();
  const float alpha = 1.0f, beta = key.accumulate ? 1.0f : 0.0f;
  LH_CUBLAS_CHECK(cublasLtMatmul(handle_, plan->desc, &alpha, a, plan->a, b, plan->b, &beta, c, plan->c, d, plan->c,
                                 &plan->algo(), workspace_, kCublasLtWorkspaceBytes, s));
}

void CublasLtMatmul::set_algorithm_choice(int rank_or_tuned) {
  if (rank_or_tuned < kTuned)
    throw std::invalid_argument("cuBLASLt algorithm choice " + std::to_string(rank_or_tuned) +
                                ": expected a rank >= 0 or kTuned");
  choice_ = rank_or_tuned;
  plans_.clear();
  last_plan_ = nullptr;
}

std::string CublasLtMatmul::last_algorithm() const {
  if (!last_plan_) return "none";
  // Attributes are 32-bit but for the two shape ids (16-bit); cuBLASLt checks the size.
  auto get = [&](cublasLtMatmulAlgoConfigAttributes_t attr, auto zero) {
    decltype(zero) v = zero;
    size_t written = 0;
    cublasLtMatmulAlgoConfigGetAttribute(&last_plan_->algo(), attr, &v, sizeof v, &written);
    return std::to_string(v);
  };
  char waves[32];
  std::snprintf(waves, sizeof waves, "%.2f", last_plan_->candidates[size_t(last_plan_->rank)].wavesCount);
  return "rank " + std::to_string(last_plan_->rank) + ": config " + get(CUBLASLT_ALGO_CONFIG_ID, int32_t{}) +
         ", tile " + get(CUBLASLT_ALGO_CONFIG_TILE_ID, uint32_t{}) + ", stages " +
         get(CUBLASLT_ALGO_CONFIG_STAGES_ID, uint32_t{}) + ", split-k " +
         get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM, int32_t{}) + " (reduction " +
         get(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, uint32_t{}) + "), swizzle " +
         get(CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, uint32_t{}) + ", custom " +
         get(CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, uint32_t{}) + ", inner " +
         get(CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, uint16_t{}) + ", cluster " +
         get(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, uint16_t{}) + ", waves " + waves;
}

std::string CublasLtMatmul::last_tuning() const { return last_plan_ ? last_plan_->tuning : "none"; }

// Row-major X[r, c] is column-major X^T[c, r] with leading dimension c; the three products below
// are the row-major formulas rewritten on the transposes.
void CublasLtMatmul::forward(__nv_bfloat16* out, const __nv_bfloat16* x, const __nv_bfloat16* w, int N, int IC,
                             int OC, int ld, cudaStream_t s) {
  // out^T[OC, N] = W[OC, IC] (stored as W^T, so transposed) * x^T[IC, N]
  run(Key{true, false, false, false, OC, N, IC, IC, IC, ld}, w, x, out, out, s);
}

void CublasLtMatmul::forward_residual(__nv_bfloat16* out, const __nv_bfloat16* x, const __nv_bfloat16* w,
                                      const __nv_bfloat16* residual, int N, int IC, int OC, cudaStream_t s) {
  // As forward, with residual^T[OC, N] as C: the sum is formed in fp32 and rounded to bf16 once.
  run(Key{true, false, false, true, OC, N, IC, IC, IC, OC}, w, x, residual, out, s);
}

void CublasLtMatmul::backward_input(__nv_bfloat16* dx, const __nv_bfloat16* dout, const __nv_bfloat16* w, int N,
                                    int IC, int OC, int ld, cudaStream_t s) {
  // dx^T[IC, N] = W^T[IC, OC] * dout^T[OC, N]
  run(Key{false, false, false, false, IC, N, OC, IC, ld, IC}, w, dout, dx, dx, s);
}

void CublasLtMatmul::backward_weight(float* dw, const __nv_bfloat16* dout, const __nv_bfloat16* x, int N, int IC,
                                     int OC, int ld, cudaStream_t s) {
  // dW^T[IC, OC] += x^T[IC, N] * dout[N, OC]  (dout^T stored, so transposed)
  run(Key{false, true, true, true, IC, OC, N, IC, ld, IC}, x, dout, dw, dw, s);
}

}  // namespace lh::cuda
