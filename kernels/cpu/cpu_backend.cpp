// The CPU backend: Backend's op API over the templated reference kernels of cpu_reference.h.
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "lighthouse/backend.h"
#include "lighthouse/ops/cpu_reference.h"
#include "lighthouse/ops/lighthouse_reference.h"

namespace lh {
namespace {

template <typename T>
class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string name() const override { return std::string("cpu-") + dtype_name(param_dtype()); }
  DType param_dtype() const override { return dtype_of<T>(); }
  DType act_dtype() const override { return dtype_of<T>(); }

  void copy_from_host(Tensor dst, const void* src) override { std::memcpy(dst.data, src, dst.bytes()); }
  void copy_to_host(void* dst, const Tensor& src) override { std::memcpy(dst, src.data, src.bytes()); }
  void fill_zero(Tensor t) override { std::memset(t.data, 0, t.bytes()); }
  void synchronize() override {}
  void convert(Tensor dst, const Tensor& src) override {
    if (dst.numel != src.numel) throw std::invalid_argument("convert: element counts differ");
    if (dst.dtype == src.dtype) {
      std::memcpy(dst.data, src.data, dst.bytes());
    } else if (dst.dtype == DType::F32 && src.dtype == DType::F64) {
      for (size_t i = 0; i < dst.numel; ++i) dst.as<float>()[i] = float(src.as<double>()[i]);
    } else if (dst.dtype == DType::F64 && src.dtype == DType::F32) {
      for (size_t i = 0; i < dst.numel; ++i) dst.as<double>()[i] = src.as<float>()[i];
    } else {
      throw std::invalid_argument(std::string("convert: ") + dtype_name(src.dtype) + " -> " + dtype_name(dst.dtype) +
                                  " is not supported on the CPU");
    }
  }

  void embedding_forward(Tensor out, const Tensor& tokens, const Tensor& wte, int N, int C) override {
    cpu::embedding_forward(out.as<T>(), tokens.as<int32_t>(), wte.as<T>(), N, C);
  }
  void embedding_backward(Tensor dwte, const Tensor& dout, const Tensor& tokens, int N, int C) override {
    cpu::embedding_backward(dwte.as<T>(), dout.as<T>(), tokens.as<int32_t>(), N, C);
  }
  void rmsnorm_forward(Tensor out, Tensor rstd, const Tensor& x, const Tensor& w, int N, int C,
                       double eps) override {
    cpu::rmsnorm_forward(out.as<T>(), rstd.as<T>(), x.as<T>(), w.as<T>(), N, C, eps);
  }
  void rmsnorm_backward(Tensor dx, Tensor dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                        const Tensor& rstd, int N, int C) override {
    cpu::rmsnorm_backward(dx.as<T>(), dw.as<T>(), dout.as<T>(), x.as<T>(), w.as<T>(), rstd.as<T>(), N, C);
  }
  void matmul_forward(Tensor out, const Tensor& x, const Tensor& w, int N, int IC, int OC, int ld) override {
    cpu::matmul_forward(out.as<T>(), x.as<T>(), w.as<T>(), N, IC, OC, ld);
  }
  void matmul_backward(Tensor dx, Tensor dw, const Tensor& dout, const Tensor& x, const Tensor& w, int N,
                       int IC, int OC, int ld) override {
    T* dx_ptr = dx.data ? dx.as<T>() : nullptr;
    cpu::matmul_backward(dx_ptr, dw.as<T>(), dout.as<T>(), x.as<T>(), w.as<T>(), N, IC, OC, ld);
  }
  void rope_forward(Tensor qkv, int B, int Tl, int H, int Hkv, int D, double theta) override {
    cpu::rope_forward(qkv.as<T>(), B, Tl, H, Hkv, D, theta);
  }
  void rope_backward(Tensor dqkv, int B, int Tl, int H, int Hkv, int D, double theta) override {
    cpu::rope_backward(dqkv.as<T>(), B, Tl, H, Hkv, D, theta);
  }
  void attention_forward(Tensor out, Tensor lse, const Tensor& qkv, int B, int Tl, int H, int Hkv,
                         int D) override {
    cpu::attention_forward(out.as<T>(), lse.as<T>(), qkv.as<T>(), B, Tl, H, Hkv, D);
  }
  void attention_backward(Tensor dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                          const Tensor& lse, int B, int Tl, int H, int Hkv, int D) override {
    cpu::attention_backward(dqkv.as<T>(), dout.as<T>(), qkv.as<T>(), out.as<T>(), lse.as<T>(), B, Tl, H, Hkv,
                            D);
  }
  void swiglu_forward(Tensor out, const Tensor& gate_up, int N, int F) override {
    cpu::swiglu_forward(out.as<T>(), gate_up.as<T>(), N, F);
  }
  void swiglu_backward(Tensor dgate_up, const Tensor& dout, const Tensor& gate_up, int N, int F) override {
    cpu::swiglu_backward(dgate_up.as<T>(), dout.as<T>(), gate_up.as<T>(), N, F);
  }
  void residual_forward(Tensor out, const Tensor& a, const Tensor& b) override {
    cpu::residual_forward(out.as<T>(), a.as<T>(), b.as<T>(), out.numel);
  }
  void accumulate(Tensor dst, const Tensor& src) override { cpu::accumulate(dst.as<T>(), src.as<T>(), dst.numel); }
  void cross_entropy_forward(Tensor losses, Tensor lse, const Tensor& logits, const Tensor& targets, int N, int V,
                             int ld) override {
    cpu::cross_entropy_forward(losses.as<T>(), lse.as<T>(), logits.as<T>(), targets.as<int32_t>(), N, V, ld);
  }
  void cross_entropy_backward(Tensor dlogits, const Tensor& logits, const Tensor& lse, const Tensor& targets, int N,
                              int V, int ld, double dloss) override {
    cpu::cross_entropy_backward(dlogits.as<T>(), logits.as<T>(), lse.as<T>(), targets.as<int32_t>(), N, V, ld, dloss);
  }
  double sum_squares(const Tensor& x) override { return cpu::sum_squares(x.as<T>(), x.numel); }
  void scale_inplace(Tensor x, double s) override { cpu::scale_inplace(x.as<T>(), x.numel, s); }
  void adamw_update(Tensor p, const Tensor& g, Tensor m, Tensor v, Tensor copy, double lr, double b1, double b2,
                    double eps, double wd, int step, double grad_scale) override {
    cpu::adamw_update(p.as<T>(), g.as<T>(), m.as<T>(), v.as<T>(), p.numel, lr, b1, b2, eps, wd, step, grad_scale);
    if (copy.data && copy.data != p.data) convert(copy, p);
  }

  // Lighthouse stages: lighthouse_reference.h, scores F32 and indices I32 whatever T is.
  using Geometry = lighthouse::Geometry;
  void lighthouse_pyramid_forward(Tensor qp, Tensor kp, Tensor vp, const Tensor& qkv, int B, int H, int Hkv, int D,
                                  const Geometry& g) override {
    lighthouse::pyramid_forward(qp.as<T>(), kp.as<T>(), vp.as<T>(), qkv.as<T>(), B, H, Hkv, D, g);
  }
  void lighthouse_pyramid_backward(Tensor dqkv, const Tensor& dqp, const Tensor& dkp, const Tensor& dvp, int B, int H,
                                   int Hkv, int D, const Geometry& g) override {
    lighthouse::pyramid_backward(dqkv.as<T>(), dqp.as<T>(), dkp.as<T>(), dvp.as<T>(), B, H, Hkv, D, g);
  }
  void lighthouse_norm_scores(Tensor score, const Tensor& pyr, int B, int Hx, int D, const Geometry& g) override {
    lighthouse::norm_scores(score.as<float>(), pyr.as<T>(), B, Hx, D, g);
  }
  void lighthouse_select(Tensor idx, const Tensor& sq, const Tensor& sk, int B, int H, int Hkv,
                         const Geometry& g) override {
    lighthouse::select(idx.as<int32_t>(), sq.as<float>(), sk.as<float>(), B, H, Hkv, g);
  }
  void lighthouse_gather_forward(Tensor sub, const Tensor& pyr, const Tensor& idx, int B, int H, int Hx, int D,
                                 const Geometry& g) override {
    lighthouse::gather_forward(sub.as<T>(), pyr.as<T>(), idx.as<int32_t>(), B, H, Hx, D, g);
  }
  void lighthouse_gather_backward(Tensor dpyr, const Tensor& dsub, const Tensor& idx, int B, int H, int Hx, int D,
                                  const Geometry& g) override {
    lighthouse::gather_backward(dpyr.as<T>(), dsub.as<T>(), idx.as<int32_t>(), B, H, Hx, D, g);
  }
  void lighthouse_sdpa_forward(Tensor o, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v, int BH, int S,
                               int D) override {
    lighthouse::sdpa_forward(o.as<T>(), lse.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(), BH, S, D);
  }
  void lighthouse_sdpa_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                                const Tensor& v, const Tensor& o, const Tensor& lse, int BH, int S, int D) override {
    lighthouse::sdpa_backward(dq.as<T>(), dk.as<T>(), dv.as<T>(), dout.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(),
                              o.as<T>(), lse.as<T>(), BH, S, D);
  }
  void lighthouse_scatter_forward(Tensor out, const Tensor& o, const Tensor& idx, int B, int H, int D,
                                  const Geometry& g) override {
    lighthouse::scatter_forward(out.as<T>(), o.as<T>(), idx.as<int32_t>(), B, H, D, g);
  }
  void lighthouse_scatter_backward(Tensor dsub, const Tensor& dout, const Tensor& idx, int B, int H, int D,
                                   const Geometry& g) override {
    lighthouse::scatter_backward(dsub.as<T>(), dout.as<T>(), idx.as<int32_t>(), B, H, D, g);
  }

 public:
  explicit CpuBackend(size_t memory_limit) : memory_limit_(memory_limit) {}
  void limit_memory(size_t bytes) override { memory_limit_ = bytes; }
  size_t allocatable_bytes() const override {
    if (memory_limit_ == SIZE_MAX) return SIZE_MAX;  // no limit (Backend::allocatable_bytes)
    return memory_limit_ > bytes_in_use() ? memory_limit_ - bytes_in_use() : 0;
  }

 protected:
  void* raw_alloc(size_t bytes) override {
    if (bytes > allocatable_bytes())
      throw OutOfMemory("out of memory: " + std::to_string(bytes) + " bytes requested, " +
                               std::to_string(allocatable_bytes()) + " of the backend's limit of " +
                               std::to_string(memory_limit_) + " left");
    // 64-byte alignment keeps rows cache-line aligned for the vectorised loops.
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void raw_free(void* p) override { std::free(p); }

 private:
  size_t memory_limit_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(DType dtype, size_t memory_limit) {
  switch (dtype) {
    case DType::F32: return std::make_unique<CpuBackend<float>>(memory_limit);
    case DType::F64: return std::make_unique<CpuBackend<double>>(memory_limit);
    default: throw std::invalid_argument(std::string("no CPU backend for dtype ") + dtype_name(dtype));
  }
}

}  // namespace lh
