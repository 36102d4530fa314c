// A cached cuBLASLt GEMM plan (cublaslt_matmul.cpp builds it, cublaslt_tuning.cpp picks its
// algorithm). Internal to those two files.
#pragma once
#include <cublasLt.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "cublaslt_matmul.h"

namespace lh::cuda {

// cuBLASLt's recommended workspace for Hopper; larger lets it pick split-K/stream-K kernels.
constexpr size_t kCublasLtWorkspaceBytes = size_t(32) << 20;

inline void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLASLt error ") + std::to_string(int(s)) + " in " + what);
}
#define LH_CUBLAS_CHECK(call) ::lh::cuda::cublas_check((call), #call)

struct CublasLtMatmul::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> candidates;  // the heuristic's list, best first
  int rank = 0;                                             // the one in use
  std::string tuning = "not tuned";
  const cublasLtMatmulAlgo_t& algo() const { return candidates[size_t(rank)].algo; }
  ~Plan() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
  }
};

}  // namespace lh::cuda
