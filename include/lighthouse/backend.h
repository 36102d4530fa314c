// The op API that model code is written against. A Backend owns device memory and runs the ops of
// include/lighthouse/ops/cpu_reference.h on it; the model never knows which device it is on.
// Implementations: CpuBackend<float> (the working fp32 reference), CpuBackend<double> (for
// whole-model finite-difference tests) and the CUDA backend (kernels/cuda/cuda_backend.cpp).
//
// Tensors are views (tensor.h) with explicit dimensions passed to each op, as in llm.c. The
// contracts (which outputs accumulate, aliasing) are those documented in cpu_reference.h.
// Element types: weights read by the forward pass and activations are act_dtype(); parameter
// gradients (dweight), rstd, lse and losses are param_dtype(). Backends check what they get.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "lighthouse/ops/lighthouse_geometry.h"
#include "lighthouse/tensor.h"

namespace lh {

class Backend;

// A failed allocation (Backend::allocate): its message says how much was asked for and held, and
// callers that know what the memory was for add that.
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs `allocate()`; if it runs out of memory, says what the memory was for (`purpose`) before the
// allocator's own message.
template <class Allocate>
auto naming_purpose(const std::string& purpose, Allocate&& allocate) -> decltype(allocate()) {
  try {
    return allocate();
  } catch (const OutOfMemory& e) {
    throw OutOfMemory(purpose + " do not fit: " + e.what());
  }
}

// "1.25 GiB", "3.0 MiB", "16.0 KiB": GiB for what a GPU holds, smaller units for small models.
std::string format_bytes(size_t bytes);

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
  void release();
  Backend* owner_ = nullptr;
  Tensor view_{};
};

// The deterministic attention backward: cuDNN's, our flash kernel wherever it applies, or auto
// (ours for long sequences only; kFlashAutoMinLength in kernels/cuda/cudnn_sdpa.h).
enum class AttentionBackward { kCudnn, kFlash, kAuto };
// "cudnn", "flash" or "auto" (training.attention_backward, LH_ATTENTION_BACKWARD); any other name
// throws std::invalid_argument naming `source`, where the name came from.
AttentionBackward attention_backward_named(const std::string& name, const std::string& source);

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
  // Bytes held in Buffers now, and the most ever held at once (scratch of libraries excluded).
  size_t bytes_in_use() const { return bytes_in_use_; }
  size_t peak_bytes() const { return peak_bytes_; }
  virtual void copy_from_host(Tensor dst, const void* src) = 0;  // dst.bytes() bytes
  virtual void copy_to_host(void* dst, const Tensor& src) = 0;
  virtual void fill_zero(Tensor t) = 0;
  virtual void synchronize() = 0;
  // Whether kernels must be bitwise reproducible (training.deterministic); the CPU always is.
  virtual void set_deterministic(bool) {}
  // Which deterministic attention backward runs (training.attention_backward). No-op where there
  // is no choice (CPU).
  virtual void set_attention_backward(AttentionBackward) {}
  // Bytes further Buffers may take: free device memory less a margin for what libraries allocate
  // later on their own. SIZE_MAX where the backend sees no limit (CPU).
  virtual size_t allocatable_bytes() const { return SIZE_MAX; }
  // Behave as a device of `bytes` in all (`--device-memory`: planning for a smaller card on a larger
  // one): allocations that would pass it fail as out of memory, and allocatable_bytes() counts from
  // it. CUDA counts what the device holds in all (context, libraries, other processes); the CPU
  // counts its Buffers, as make_cpu_backend's memory_limit does.
  virtual void limit_memory(size_t bytes) = 0;
  // Prepares attention calls of this shape (attention_* on fused qkv; lighthouse_sdpa_* on packed
  // [BH, S, D]) and takes the library workspace they need now, so that allocatable_bytes() already
  // accounts for it (cuDNN plans on CUDA). No-ops on the CPU.
  virtual void prepare_attention(int /*B*/, int /*T*/, int /*H*/, int /*Hkv*/, int /*D*/) {}
  virtual void prepare_lighthouse_sdpa(int /*BH*/, int /*S*/, int /*D*/) {}
  // Versions of what the backend runs on, for checkpoints' provenance (lighthouse/provenance.h):
  // e.g. {"cuda_runtime": "13.0", "cudnn": "9.14.0"}; empty on the CPU.
  virtual std::map<std::string, std::string> runtime_versions() const { return {}; }
  // The attention library's workspace held now (it only grows while calls need more), and the
  // release of it and of the kernels' scratch (plans stay cached; both are taken again when needed):
  // the trainer's memory check before step 1 lays out every phase from the same start, and a
  // phase switch starts the next phase from there too.
  virtual size_t attention_workspace_bytes() const { return 0; }
  virtual void release_scratch() {}
  // Takes now the scratch that matmuls of this shape and row stride will need (CUDA: the output
  // layer's zero-padded weight copy when ld > OC), for the same reason. A no-op on the CPU.
  virtual void prepare_matmul(int /*IC*/, int /*OC*/, int /*ld*/) {}
  // Takes now what RoPE over T positions will read (CUDA: the cos/sin table), likewise.
  virtual void prepare_rope(int /*T*/, int /*D*/, double /*theta*/) {}
  // The stream the backend queues work on (a cudaStream_t), for collectives; null on the CPU.
  virtual void* stream() { return nullptr; }
  // A second stream for communication that overlaps the compute stream (null on the CPU, where
  // everything runs in order on the calling thread).
  virtual void* comm_stream() { return nullptr; }
  // Work enqueued on `waiter` after this call starts only after the work enqueued on `signaller`
  // before it (an event, no host wait). A no-op on the CPU.
  virtual void stream_wait(void* /*waiter*/, void* /*signaller*/) {}
  // dst = src converted elementwise to dst's dtype (same numel).
  virtual void convert(Tensor dst, const Tensor& src) = 0;

  // ---- ops (semantics: cpu_reference.h) ---------------------------------------------------------
  virtual void embedding_forward(Tensor out, const Tensor& tokens, const Tensor& wte, int N, int C) = 0;
  virtual void embedding_backward(Tensor dwte, const Tensor& dout, const Tensor& tokens, int N, int C) = 0;
  virtual void rmsnorm_forward(Tensor out, Tensor rstd, const Tensor& x, const Tensor& weight, int N, int C,
                               double eps) = 0;
  virtual void rmsnorm_backward(Tensor dx, Tensor dweight, const Tensor& dout, const Tensor& x,
                                const Tensor& weight, const Tensor& rstd, int N, int C) = 0;
  // The [N, OC] matrix of a matmul (out, dout) has rows `ld` elements apart, ld >= OC: the output
  // layer pads its logits' rows to 16 bytes (ModelConfig::logits_row_stride) so that the GEMMs can
  // use fast kernels whatever the vocabulary; every other matmul passes ld = OC. The padding
  // columns hold zeros: matmul_forward writes them and matmul_backward may read them (CUDA runs
  // its GEMMs at OC = ld on a weight padded with zero rows, cuda_backend.cpp).
  virtual void matmul_forward(Tensor out, const Tensor& x, const Tensor& weight, int N, int IC, int OC, int ld) = 0;
  // out = x @ weight^T + residual (out must not alias residual). Default: matmul_forward then
  // residual_forward, the reference; CUDA adds the residual in the GEMM's epilogue instead, which
  // saves a pass over memory and rounds the sum to bf16 once instead of twice.
  virtual void matmul_forward_residual(Tensor out, const Tensor& x, const Tensor& weight, const Tensor& residual,
                                       int N, int IC, int OC);
  // dx may be an empty Tensor (data == nullptr): no input gradient wanted.
  virtual void matmul_backward(Tensor dx, Tensor dweight, const Tensor& dout, const Tensor& x,
                               const Tensor& weight, int N, int IC, int OC, int ld) = 0;
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
  // logits [N, V] with rows ld elements apart (ld >= V): the forward does not read the padding,
  // the backward sets it to zero (matmul_backward's dout). The forward also writes each row's
  // log-sum-exp (lse, [N], param dtype), which the backward reads instead of a second pass.
  virtual void cross_entropy_forward(Tensor losses, Tensor lse, const Tensor& logits, const Tensor& targets, int N,
                                     int V, int ld) = 0;
  virtual void cross_entropy_backward(Tensor dlogits, const Tensor& logits, const Tensor& lse, const Tensor& targets,
                                      int N, int V, int ld, double dloss) = 0;
  virtual double sum_squares(const Tensor& x) = 0;
  virtual void scale_inplace(Tensor x, double s) = 0;
  // Updates the master weights from grad * grad_scale (grad is not written); when compute_copy is not
  // empty, also refreshes it from them.
  virtual void adamw_update(Tensor param, const Tensor& grad, Tensor m, Tensor v, Tensor compute_copy, double lr,
                            double beta1, double beta2, double eps, double weight_decay, int step,
                            double grad_scale) = 0;

  // ---- Lighthouse attention stages (semantics and layouts: ops/lighthouse_reference.h) ---------
  // Data tensors are act_dtype(); lse is param_dtype(); scores are F32 and indices I32 on every
  // backend. Not pure: a backend that lacks them throws naming the op when a lighthouse phase runs.
  virtual void lighthouse_pyramid_forward(Tensor /*qpyr*/, Tensor /*kpyr*/, Tensor /*vpyr*/, const Tensor& /*qkv*/,
                                          int /*B*/, int /*H*/, int /*Hkv*/, int /*D*/, const lighthouse::Geometry&) {
    lighthouse_missing("pyramid_forward");
  }
  virtual void lighthouse_pyramid_backward(Tensor /*dqkv*/, const Tensor& /*dqpyr*/, const Tensor& /*dkpyr*/,
                                           const Tensor& /*dvpyr*/, int /*B*/, int /*H*/, int /*Hkv*/, int /*D*/,
                                           const lighthouse::Geometry&) {
    lighthouse_missing("pyramid_backward");
  }
  virtual void lighthouse_norm_scores(Tensor /*score*/, const Tensor& /*pyr*/, int /*B*/, int /*Hx*/, int /*D*/,
                                      const lighthouse::Geometry&) {
    lighthouse_missing("norm_scores");
  }
  // May copy the scores to the host and the indices back on a device: selection is a sort.
  virtual void lighthouse_select(Tensor /*idx*/, const Tensor& /*sq*/, const Tensor& /*sk*/, int /*B*/, int /*H*/,
                                 int /*Hkv*/, const lighthouse::Geometry&) {
    lighthouse_missing("select");
  }
  virtual void lighthouse_gather_forward(Tensor /*sub*/, const Tensor& /*pyr*/, const Tensor& /*idx*/, int /*B*/,
                                         int /*H*/, int /*Hx*/, int /*D*/, const lighthouse::Geometry&) {
    lighthouse_missing("gather_forward");
  }
  virtual void lighthouse_gather_backward(Tensor /*dpyr*/, const Tensor& /*dsub*/, const Tensor& /*idx*/, int /*B*/,
                                          int /*H*/, int /*Hx*/, int /*D*/, const lighthouse::Geometry&) {
    lighthouse_missing("gather_backward");
  }
  virtual void lighthouse_sdpa_forward(Tensor /*o*/, Tensor /*lse*/, const Tensor& /*q*/, const Tensor& /*k*/,
                                       const Tensor& /*v*/, int /*BH*/, int /*S*/, int /*D*/) {
    lighthouse_missing("sdpa_forward");
  }
  virtual void lighthouse_sdpa_backward(Tensor /*dq*/, Tensor /*dk*/, Tensor /*dv*/, const Tensor& /*dout*/,
                                        const Tensor& /*q*/, const Tensor& /*k*/, const Tensor& /*v*/,
                                        const Tensor& /*o*/, const Tensor& /*lse*/, int /*BH*/, int /*S*/, int /*D*/) {
    lighthouse_missing("sdpa_backward");
  }
  virtual void lighthouse_scatter_forward(Tensor /*out*/, const Tensor& /*o*/, const Tensor& /*idx*/, int /*B*/,
                                          int /*H*/, int /*D*/, const lighthouse::Geometry&) {
    lighthouse_missing("scatter_forward");
  }
  virtual void lighthouse_scatter_backward(Tensor /*dsub*/, const Tensor& /*dout*/, const Tensor& /*idx*/, int /*B*/,
                                           int /*H*/, int /*D*/, const lighthouse::Geometry&) {
    lighthouse_missing("scatter_backward");
  }

  // ---- Lighthouse composites: the stage sequences the attention layer runs ------------------------
  // The defaults run the stages above in the reference order; a backend may fuse them as long as
  // the results are the same (CUDA reads level 0 straight from qkv, so the level-0 rows of the
  // pyramid tensors serve only as scratch there). Forward up to the inner attention: pyramids into
  // qpyr/kpyr/vpyr, norm scores into sq/sk, the selection into idx, gathered q, k, v [B, H, S, D].
  virtual void lighthouse_select_gather(Tensor q, Tensor k, Tensor v, Tensor idx, const Tensor& qkv, Tensor qpyr,
                                        Tensor kpyr, Tensor vpyr, Tensor sq, Tensor sk, int B, int H, int Hkv, int D,
                                        const lighthouse::Geometry& g);
  // Backward from the inner attention's dq, dk, dv to dqkv (written, not accumulated), with the
  // pyramid gradients as scratch: gather backward of each part, then the pyramid backward.
  virtual void lighthouse_gather_pyramid_backward(Tensor dqkv, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                                  const Tensor& idx, Tensor dqpyr, Tensor dkpyr, Tensor dvpyr, int B,
                                                  int H, int Hkv, int D, const lighthouse::Geometry& g);

 protected:
  friend class Buffer;
  virtual void* raw_alloc(size_t bytes) = 0;
  virtual void raw_free(void* p) = 0;

 private:
  [[noreturn]] void lighthouse_missing(const char* op) const {
    throw std::logic_error("backend " + name() + " does not implement lighthouse " + op);
  }

 private:
  size_t bytes_in_use_ = 0, peak_bytes_ = 0;
};

// The CPU reference backend in fp32 (dtype F32) or fp64 (dtype F64, for gradient checks).
// memory_limit makes it behave as a device of that many bytes (allocations beyond it throw), for
// testing choices that depend on memory.
std::unique_ptr<Backend> make_cpu_backend(DType dtype = DType::F32, size_t memory_limit = SIZE_MAX);
// The CUDA backend on one device: bf16 activations, fp32 master weights/gradients/statistics.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);

}  // namespace lh
