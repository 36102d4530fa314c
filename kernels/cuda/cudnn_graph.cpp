#include "cudnn_graph.h"

#include <cstdio>
#include <stdexcept>

#include "cudnn_engine_choice.h"

namespace lh::cuda {

void cudnn_check(cudnnStatus_t status, const char* what, const char* file, int line) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  char detail[1024] = {0};
  cudnnGetLastErrorString(detail, sizeof detail);
  throw std::runtime_error(std::string("cuDNN error ") + cudnnGetErrorString(status) + " in " + what + " at " +
                           file + ":" + std::to_string(line) + (detail[0] ? std::string(": ") + detail : ""));
}

CudnnDesc::CudnnDesc(cudnnBackendDescriptorType_t type) { LH_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_)); }

CudnnDesc::~CudnnDesc() {
  if (d_) cudnnBackendDestroyDescriptor(d_);
}

CudnnDesc& CudnnDesc::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                          const void* values) {
  LH_CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, type, count, values));
  return *this;
}

CudnnDesc& CudnnDesc::finalize() {
  LH_CUDNN_CHECK(cudnnBackendFinalize(d_));
  return *this;
}

CudnnGraph::Dims CudnnGraph::contiguous_strides(const Dims& dims) {
  Dims s(dims.size(), 1);
  for (int i = int(dims.size()) - 2; i >= 0; --i) s[i] = s[i + 1] * dims[i + 1];
  return s;
}

namespace {
// cuDNN wants 16-byte aligned data; our bf16 tensors with head dims that are multiples of 8 are.
constexpr int64_t kByteAlignment = 16;
}  // namespace

const CudnnDesc& CudnnGraph::tensor(int64_t uid, cudnnDataType_t t, const Dims& dims, const Dims& strides) {
  CudnnDesc& d = descs_.emplace_back(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  d.set_dtype(CUDNN_ATTR_TENSOR_DATA_TYPE, t)
      .set_int64s(CUDNN_ATTR_TENSOR_DIMENSIONS, dims)
      .set_int64s(CUDNN_ATTR_TENSOR_STRIDES, strides)
      .set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
      .set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, kByteAlignment)
      .finalize();
  return d;
}

const CudnnDesc& CudnnGraph::scalar(int64_t uid, cudnnDataType_t t) {
  const Dims one = {1, 1, 1, 1};
  CudnnDesc& d = descs_.emplace_back(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  d.set_dtype(CUDNN_ATTR_TENSOR_DATA_TYPE, t)
      .set_int64s(CUDNN_ATTR_TENSOR_DIMENSIONS, one)
      .set_int64s(CUDNN_ATTR_TENSOR_STRIDES, one)
      .set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
      .set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, kByteAlignment)
      .set_bool(CUDNN_ATTR_TENSOR_IS_BY_VALUE, true)
      .finalize();
  return d;
}

const CudnnDesc& CudnnGraph::virt(cudnnDataType_t t, const Dims& dims, Dims strides) {
  if (strides.empty()) strides = contiguous_strides(dims);
  CudnnDesc& d = descs_.emplace_back(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  d.set_dtype(CUDNN_ATTR_TENSOR_DATA_TYPE, t)
      .set_int64s(CUDNN_ATTR_TENSOR_DIMENSIONS, dims)
      .set_int64s(CUDNN_ATTR_TENSOR_STRIDES, strides)
      .set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, next_virtual_uid_++)
      .set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, kByteAlignment)
      .set_bool(CUDNN_ATTR_TENSOR_IS_VIRTUAL, true)
      .finalize();
  return d;
}

void CudnnGraph::matmul(const CudnnDesc& a, const CudnnDesc& b, const CudnnDesc& c) {
  CudnnDesc& mm = descs_.emplace_back(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  mm.set_dtype(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
  CudnnDesc& op = descs_.emplace_back(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, mm)
      .finalize();
  ops_.push_back(&op);
}

void CudnnGraph::pointwise(cudnnPointwiseMode_t mode, cudnnDataType_t math, const CudnnDesc& x, const CudnnDesc* b,
                           const CudnnDesc& y, const CudnnDesc* t) {
  CudnnDesc& pw = descs_.emplace_back(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)
      .set_dtype(CUDNN_ATTR_POINTWISE_MATH_PREC, math)
      .finalize();
  CudnnDesc& op = descs_.emplace_back(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw).set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
  if (b) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
  if (t) op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, *t);
  op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y).finalize();
  ops_.push_back(&op);
}

void CudnnGraph::gen_index(const CudnnDesc& like, int64_t axis, const CudnnDesc& y) {
  const cudnnPointwiseMode_t mode = CUDNN_POINTWISE_GEN_INDEX;
  CudnnDesc& pw = descs_.emplace_back(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)
      .set_dtype(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_DATA_INT32)
      .set_int64(CUDNN_ATTR_POINTWISE_AXIS, axis)
      .finalize();
  CudnnDesc& op = descs_.emplace_back(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pw)
      .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, like)
      .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y)
      .finalize();
  ops_.push_back(&op);
}

void CudnnGraph::reduction(cudnnReduceTensorOp_t reduce, const CudnnDesc& x, const CudnnDesc& y) {
  CudnnDesc& red = descs_.emplace_back(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
  red.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce)
      .set_dtype(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
      .finalize();
  CudnnDesc& op = descs_.emplace_back(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
      .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
      .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, red)
      .finalize();
  ops_.push_back(&op);
}

void CudnnGraph::reshape(const CudnnDesc& x, const CudnnDesc& y) {
  CudnnDesc& op = descs_.emplace_back(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  op.set_desc(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x).set_desc(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y).finalize();
  ops_.push_back(&op);
}

CudnnPlan CudnnGraph::build(cudnnHandle_t handle, const std::string& name) {
  const EngineChoiceOptions choice = engine_choice_from_env(name);
  CudnnPlan out;
  out.keep_alive = std::move(descs_);
  std::vector<cudnnBackendDescriptor_t> raw_ops;
  for (const CudnnDesc* op : ops_) raw_ops.push_back(op->get());
  CudnnDesc& graph = out.keep_alive.emplace_back(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(raw_ops.size()), raw_ops.data())
      .set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
      .finalize();

  CudnnDesc& heur = out.keep_alive.emplace_back(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph)
      .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &choice.mode)
      .finalize();
  int64_t count = 0;
  LH_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                          0, &count, nullptr));
  if (count <= 0) throw std::runtime_error("cuDNN: no engine supports the " + name + " attention graph");
  std::vector<CudnnDesc*> configs;
  std::vector<cudnnBackendDescriptor_t> raw_configs;
  for (int64_t i = 0; i < count; ++i) {
    configs.push_back(&out.keep_alive.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw_configs.push_back(configs.back()->get());
  }
  int64_t filled = 0;
  LH_CUDNN_CHECK(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                          count, &filled, raw_configs.data()));
  std::string failures;
  int64_t finalized = 0;
  for (int64_t i = 0; i < filled; ++i) {
    if (out.plan && !choice.verbose) break;  // verbose lists every configuration
    if (choice.verbose) std::fprintf(stderr, "cuDNN %s config %lld: %s\n", name.c_str(), (long long)i,
                                     describe_engine_config(configs[i]->get()).c_str());
    CudnnDesc& plan = out.keep_alive.emplace_back(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    try {
      const bool chosen = !out.plan && finalized == choice.config_index;
      const CudnnDesc& config = chosen && !choice.knob_overrides.empty()
                                    ? make_engine_config(graph.get(), configs[i]->get(), choice.knob_overrides,
                                                         out.keep_alive)
                                    : *configs[i];
      plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
          .set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, config)
          .finalize();
      int64_t ws = 0, got = 0;
      LH_CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64,
                                              1, &got, &ws));
      if (choice.verbose)
        std::fprintf(stderr, "  finalized (workspace %.1f MiB)%s%s\n", ws / 1048576.0, chosen ? ", chosen" : "",
                     chosen && !choice.knob_overrides.empty() ? " with knob overrides" : "");
      if (chosen) out.plan = &plan, out.workspace_bytes = ws;
      ++finalized;
    } catch (const std::exception& e) {
      failures += "\n  engine config " + std::to_string(i) + ": " + e.what();
      if (choice.verbose) std::fprintf(stderr, "  not finalized: %s\n", e.what());
    }
  }
  if (out.plan) return out;
  if (finalized > 0)
    throw std::runtime_error("cuDNN " + name + " attention: LH_CUDNN_" + name + "_CONFIG=" +
                             std::to_string(choice.config_index) + " (or its LH_CUDNN_" + name +
                             "_KNOBS) does not give a plan; " + std::to_string(finalized) +
                             " configurations finalize:" + failures);
  throw std::runtime_error("cuDNN: no execution plan finalized for the " + name + " attention graph:" + failures);
}

void cudnn_execute(cudnnHandle_t handle, const CudnnPlan& plan, const std::vector<int64_t>& uids,
                   const std::vector<void*>& pointers, void* workspace) {
  CudnnDesc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, int64_t(uids.size()), uids.data())
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, int64_t(pointers.size()), pointers.data())
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace)
      .finalize();
  LH_CUDNN_CHECK(cudnnBackendExecute(handle, plan.plan->get(), pack.get()));
}

}  // namespace lh::cuda
