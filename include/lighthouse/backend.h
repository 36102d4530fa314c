// The op API that model code is written against. A Backend owns device memory and runs the ops of
// include/lighthouse/ops/cpu_reference.h on it; the model never knows which device it is on.
// Implementations: CpuBackend<float> (the working fp32 reference), CpuBackend<double> (for
// whole-model finite-difference tests) and, later, the CUDA backend.
//
// Tensors are views (tensor.h) with explicit dimensions passed to each op, as in llm.c. The
// contracts (which outputs accumulate, aliasing) are those documented in cpu_reference.h.
// Element types: weights read by the forward pass and activations are act_dtype(); parameter
// gradients (dweight), rstd, lse and losses are param_dtype(). Backends check what they get.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "lighthouse/tensor.h"

namespace lh {

class Backend;

// An owning allocation on a backend's device; frees itself.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend* owner, Tensor view) : owner_(owner), view_(view) {}
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  const Tensor& view() const { return view_; }
  Tensor slice(size_t offset, size_t n) const { return view_.slice(offset, n); }
  size_t numel() const { return view_.numel; }

 private:
  Backend* owner_ = nullptr;
  Tensor view_{};
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  virtual std::string name() const = 0;
  // Element type of master weights, gradients, optimizer moments and statistics (norm rstd,
  // softmax log-sum-exp, losses): F32 (F64 for the gradient-check backend).
  virtual DType param_dtype() const = 0;
  // Element type of activations and of the compute copy of the weights the forward pass reads:
  // the param dtype on the CPU, BF16 on CUDA.
  virtual DType act_dtype() const = 0;

  // ---- memory ----------------------------------------------------------------------------------
  Buffer allocate(DType dtype, size_t numel);  // zero-filled
  virtual void copy_from_host(Tensor dst, const void* src) = 0;  // dst.bytes() bytes
  virtual void copy_to_host(void* dst, const Tensor& src) = 0;
  virtual void fill_zero(Tensor t) = 0;
  virtual void synchronize() = 0;
  // dst = src converted elementwise to dst's dtype (same numel).
  virtual void convert(Tensor dst, const Tensor& src) = 0;

  // ---- ops (semantics: cpu_reference.h) ---------------------------------------------------------
  virtual void embedding_forward(Tensor out, const Tensor& tokens, const Tensor& wte, int N, int C) = 0;
  virtual void embedding_backward(Tensor dwte, const Tensor& dout, const Tensor& tokens, int N, int C) = 0;
  virtual void rmsnorm_forward(Tensor out, Tensor rstd, const Tensor& x, const Tensor& weight, int N, int C,
                               double eps) = 0;
  virtual void rmsnorm_backward(Tensor dx, Tensor dweight, const Tensor& dout, const Tensor& x,
                                const Tensor& weight, const Tensor& rstd, int N, int C) = 0;
  virtual void matmul_forward(Tensor out, const Tensor& x, const Tensor& weight, int N, int IC, int OC) = 0;
  // dx may be an empty Tensor (data == nullptr): no input gradient wanted.
  virtual void matmul_backward(Tensor dx, Tensor dweight, const Tensor& dout, const Tensor& x,
                               const Tensor& weight, int N, int IC, int OC) = 0;
  virtual void rope_forward(Tensor qkv, int B, int T, int H, int Hkv, int D, double theta) = 0;
  virtual void rope_backward(Tensor dqkv, int B, int T, int H, int Hkv, int D, double theta) = 0;
  virtual void attention_forward(Tensor out, Tensor lse, const Tensor& qkv, int B, int T, int H, int Hkv,
                                 int D) = 0;
  virtual void attention_backward(Tensor dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                                  const Tensor& lse, int B, int T, int H, int Hkv, int D) = 0;
  virtual void swiglu_forward(Tensor out, const Tensor& gate_up, int N, int F) = 0;
  virtual void swiglu_backward(Tensor dgate_up, const Tensor& dout, const Tensor& gate_up, int N, int F) = 0;
  virtual void residual_forward(Tensor out, const Tensor& a, const Tensor& b) = 0;
  virtual void accumulate(Tensor dst, const Tensor& src) = 0;
  virtual void cross_entropy_forward(Tensor losses, const Tensor& logits, const Tensor& targets, int N,
                                     int V) = 0;
  virtual void cross_entropy_backward(Tensor dlogits, const Tensor& logits, const Tensor& targets, int N,
                                      int V, double dloss) = 0;
  virtual double sum_squares(const Tensor& x) = 0;
  virtual void scale_inplace(Tensor x, double s) = 0;
  // Updates the master weights; when compute_copy is not empty, also refreshes it from them.
  virtual void adamw_update(Tensor param, const Tensor& grad, Tensor m, Tensor v, Tensor compute_copy, double lr,
                            double beta1, double beta2, double eps, double weight_decay, int step) = 0;

 protected:
  friend class Buffer;
  virtual void* raw_alloc(size_t bytes) = 0;
  virtual void raw_free(void* p) = 0;
};

// The CPU reference backend in fp32 (dtype F32) or fp64 (dtype F64, for gradient checks).
std::unique_ptr<Backend> make_cpu_backend(DType dtype = DType::F32);

}  // namespace lh
