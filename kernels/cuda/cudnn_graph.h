// A thin C++ layer over cuDNN's backend (graph) API: RAII descriptors, a graph builder that hands
// out tensor descriptors with unique ids, and plan building from cuDNN's heuristics. We do not use
// cudnn-frontend (not installable here); this is the part of it that attention needs.
#pragma once
#include <cudnn.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace lh::cuda {

// Throws with cuDNN's status name and its last error string.
void cudnn_check(cudnnStatus_t status, const char* what, const char* file, int line);
#define LH_CUDNN_CHECK(call) ::lh::cuda::cudnn_check((call), #call, __FILE__, __LINE__)

class CudnnDesc {
 public:
  explicit CudnnDesc(cudnnBackendDescriptorType_t type);
  ~CudnnDesc();
  CudnnDesc(CudnnDesc&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  CudnnDesc& operator=(CudnnDesc&&) = delete;
  CudnnDesc(const CudnnDesc&) = delete;
  cudnnBackendDescriptor_t get() const { return d_; }

  CudnnDesc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                 const void* values);
  CudnnDesc& set_int64(cudnnBackendAttributeName_t name, int64_t v) { return set(name, CUDNN_TYPE_INT64, 1, &v); }
  CudnnDesc& set_int64s(cudnnBackendAttributeName_t name, const std::vector<int64_t>& v) {
    return set(name, CUDNN_TYPE_INT64, int64_t(v.size()), v.data());
  }
  CudnnDesc& set_dtype(cudnnBackendAttributeName_t name, cudnnDataType_t t) {
    return set(name, CUDNN_TYPE_DATA_TYPE, 1, &t);
  }
  CudnnDesc& set_bool(cudnnBackendAttributeName_t name, bool v) {
    const bool b = v;
    return set(name, CUDNN_TYPE_BOOLEAN, 1, &b);
  }
  CudnnDesc& set_desc(cudnnBackendAttributeName_t name, const CudnnDesc& d) {
    cudnnBackendDescriptor_t raw = d.get();
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
  }
  CudnnDesc& finalize();

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// A compiled execution plan and the workspace it needs.
struct CudnnPlan {
  std::deque<CudnnDesc> keep_alive;  // descriptors the plan was built from
  CudnnDesc* plan = nullptr;
  int64_t workspace_bytes = 0;
};

// Builds one operation graph. Tensors that the caller binds at execution time get the uid it
// chooses; virtual tensors get fresh uids from a range above the caller's.
class CudnnGraph {
 public:
  using Dims = std::vector<int64_t>;
  static constexpr int64_t kFirstVirtualUid = 1000;

  // A tensor in memory (bound by uid at execution), or a host scalar passed by value.
  const CudnnDesc& tensor(int64_t uid, cudnnDataType_t t, const Dims& dims, const Dims& strides);
  const CudnnDesc& scalar(int64_t uid, cudnnDataType_t t);
  // An intermediate that never touches memory; contiguous strides unless given.
  const CudnnDesc& virt(cudnnDataType_t t, const Dims& dims, Dims strides = {});

  void matmul(const CudnnDesc& a, const CudnnDesc& b, const CudnnDesc& c);
  // Unary (b == nullptr), binary, or BINARY_SELECT (t = condition).
  void pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t math, const CudnnDesc& x, const CudnnDesc* b,
                 const CudnnDesc& y, const CudnnDesc* t = nullptr);
  void gen_index(const CudnnDesc& like, int64_t axis, const CudnnDesc& y);
  void reduction(cudnnReduceTensorOp_t op, const CudnnDesc& x, const CudnnDesc& y);
  void reshape(const CudnnDesc& x, const CudnnDesc& y);

  // Finalizes the graph and returns the first engine config (heuristics mode A) whose plan
  // finalizes, unless the environment picks another (cudnn_engine_choice.h; `name` selects the
  // variables, e.g. "BACKWARD"). Throws with every engine's failure when none does.
  CudnnPlan build(cudnnHandle_t handle, const std::string& name);

  static Dims contiguous_strides(const Dims& dims);

 private:
  std::deque<CudnnDesc> descs_;  // stable addresses
  std::vector<const CudnnDesc*> ops_;
  int64_t next_virtual_uid_ = kFirstVirtualUid;
};

// Runs a plan with device pointers bound to uids (host pointers for by-value scalars).
void cudnn_execute(cudnnHandle_t handle, const CudnnPlan& plan, const std::vector<int64_t>& uids,
                   const std::vector<void*>& pointers, void* workspace);

}  // namespace lh::cuda
