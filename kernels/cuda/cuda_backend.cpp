// The CUDA backend: bf16 activations and compute weights, fp32 master weights, gradients, moments
// and statistics. GEMMs through cuBLASLt, attention through cuDNN, everything else hand-written
// (kernels.h). All work is queued on one stream; host transfers synchronise it.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cublaslt_matmul.h"
#include "cuda_check.h"
#include "cudnn_sdpa.h"
#include "kernels.h"
#include "lighthouse_kernels.h"
#include "memory_cap.h"
#include "lighthouse/backend.h"
#include "lighthouse/device.h"
#include "lighthouse/ops/cpu_reference.h"

namespace lh {
namespace {

using cuda::bf16;

bf16* bf(const Tensor& t, const char* what) {
  if (t.dtype != DType::BF16) throw std::logic_error(std::string(what) + ": expected a BF16 tensor, got " + dtype_name(t.dtype));
  return static_cast<bf16*>(t.data);
}
float* f32(const Tensor& t) { return t.as<float>(); }
int32_t* i32(const Tensor& t) { return t.as<int32_t>(); }

class CudaBackend final : public Backend {
 public:
  // The device is selected before any member (cuBLASLt, cuDNN) allocates on it.
  explicit CudaBackend(int device) : device_(select(device)) {
    // The attention backward where no config chooses one (tests, `bench attention`): auto, as in
    // training.attention_backward, unless LH_ATTENTION_BACKWARD says otherwise; a training run's
    // configure_kernels overrides it.
    const char* env = std::getenv("LH_ATTENTION_BACKWARD");
    set_attention_backward(env && *env ? attention_backward_named(env, "LH_ATTENTION_BACKWARD")
                                       : AttentionBackward::kAuto);
    // A throw from a constructor skips the destructor (the members clean up after themselves): the
    // raw stream and buffer are released here.
    try {
      LH_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      LH_CUDA_CHECK(cudaMalloc(&reduce_result_, sizeof(double)));
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaBackend() override { release(); }

  Device device() const override { return Device::CUDA; }
  std::string name() const override { return "cuda:" + std::to_string(device_) + " (" + cuda_device_description(device_) + ")"; }
  DType param_dtype() const override { return DType::F32; }
  DType act_dtype() const override { return DType::BF16; }

  void copy_from_host(Tensor dst, const void* src) override {
    LH_CUDA_CHECK(cudaMemcpyAsync(dst.data, src, dst.bytes(), cudaMemcpyHostToDevice, stream_));
    synchronize();  // the host buffer may go away as soon as we return
  }
  void copy_to_host(void* dst, const Tensor& src) override {
    LH_CUDA_CHECK(cudaMemcpyAsync(dst, src.data, src.bytes(), cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }
  void fill_zero(Tensor t) override { LH_CUDA_CHECK(cudaMemsetAsync(t.data, 0, t.bytes(), stream_)); }
  void synchronize() override { LH_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void set_deterministic(bool on) override { sdpa_.set_deterministic(on); }
  void set_attention_backward(AttentionBackward b) override {
    sdpa_.set_flash_backward(b != AttentionBackward::kCudnn, b == AttentionBackward::kAuto ? cuda::kFlashAutoMinLength : 0);
  }
  void limit_memory(size_t bytes) override {
    size_t free_bytes = 0, total_bytes = 0;
    LH_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (bytes >= total_bytes)
      std::fprintf(stderr, "warning: --device-memory %s is not below %s's %s: it changes nothing\n",
                   format_bytes(bytes).c_str(), name().c_str(), format_bytes(total_bytes).c_str());
    cap_.bytes = bytes;
    sdpa_.set_memory_cap(cap_);
  }
  size_t allocatable_bytes() const override {
    size_t free_bytes = 0, total_bytes = 0;
    cap_.info(&free_bytes, &total_bytes);
    // cuDNN's workspace is already taken (prepare_attention); the margin is for what is allocated
    // lazily later (cuBLASLt and kernel scratch, communicator buffers) and for fragmentation: 1 GiB,
    // or 1/64 of the device (2.2 GiB of an H200) where that is more.
    constexpr size_t kMinMargin = size_t(1) << 30, kDeviceShareForMargin = 64;
    const size_t margin = std::max(kMinMargin, total_bytes / kDeviceShareForMargin);
    return free_bytes > margin ? free_bytes - margin : 0;
  }
  void prepare_attention(int B, int T, int H, int Hkv, int D) override {
    sdpa_.prepare(cuda::fused_qkv_shape(B, T, H, Hkv, D));
  }
  void prepare_lighthouse_sdpa(int BH, int S, int D) override { sdpa_.prepare(packed_shape(BH, S, D)); }
  std::map<std::string, std::string> runtime_versions() const override {
    int runtime = 0, driver = 0;
    LH_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
    LH_CUDA_CHECK(cudaDriverGetVersion(&driver));
    // CUDA encodes 1000 * major + 10 * minor; cuDNN and cuBLASLt 10000 * major + 100 * minor + patch.
    auto cuda_version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
    auto library_version = [](size_t v) {
      return std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100);
    };
    cudaDeviceProp prop{};
    LH_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    return {{"gpu", std::string(prop.name) + " (sm_" + std::to_string(prop.major * 10 + prop.minor) + ")"},
            {"cuda_runtime", cuda_version(runtime)}, {"cuda_driver", cuda_version(driver)},
            {"cudnn", library_version(cudnnGetVersion())}, {"cublaslt", library_version(cublasLtGetVersion())}};
  }
  size_t attention_workspace_bytes() const override { return sdpa_.workspace_bytes(); }
  void release_scratch() override {
    synchronize();  // calls in flight may still use them
    sdpa_.release_workspace();
    if (scratch_) LH_CUDA_CHECK(cudaFree(scratch_));
    scratch_ = nullptr;
    scratch_size_ = 0;
    rope_tables_.clear();  // taken again, at the next phase's length, by prepare_rope
  }
  void prepare_matmul(int IC, int OC, int ld) override {
    if (ld > OC) scratch_bytes(padded_weight_bytes(IC, ld));
  }
  void* stream() override { return stream_; }
  void* comm_stream() override {
    if (!comm_stream_) {
      // Higher priority, so communication kernels are scheduled as soon as their bucket is ready
      // instead of queueing behind the backward pass's kernels.
      int least = 0, greatest = 0;
      LH_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
      LH_CUDA_CHECK(cudaStreamCreateWithPriority(&comm_stream_, cudaStreamNonBlocking, greatest));
      LH_CUDA_CHECK(cudaEventCreateWithFlags(&order_event_, cudaEventDisableTiming));
    }
    return comm_stream_;
  }
  void stream_wait(void* waiter, void* signaller) override {
    if (waiter == signaller) return;
    comm_stream();  // creates the event
    // A wait captures the event's latest record at call time, so one event serves every wait.
    LH_CUDA_CHECK(cudaEventRecord(order_event_, static_cast<cudaStream_t>(signaller)));
    LH_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(waiter), order_event_, 0));
  }
  void convert(Tensor dst, const Tensor& src) override {
    if (dst.numel != src.numel) throw std::invalid_argument("convert: element counts differ");
    if (dst.dtype == src.dtype) {
      LH_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.bytes(), cudaMemcpyDeviceToDevice, stream_));
    } else if (dst.dtype == DType::BF16 && src.dtype == DType::F32) {
      cuda::convert_f32_to_bf16(bf(dst, "convert"), f32(src), dst.numel, stream_);
    } else if (dst.dtype == DType::F32 && src.dtype == DType::BF16) {
      cuda::convert_bf16_to_f32(f32(dst), bf(src, "convert"), dst.numel, stream_);
    } else {
      throw std::invalid_argument(std::string("convert: ") + dtype_name(src.dtype) + " -> " + dtype_name(dst.dtype));
    }
  }

  void embedding_forward(Tensor out, const Tensor& tokens, const Tensor& wte, int N, int C) override {
    cuda::embedding_forward(bf(out, "embedding"), i32(tokens), bf(wte, "embedding"), N, C, stream_);
  }
  void embedding_backward(Tensor dwte, const Tensor& dout, const Tensor& tokens, int N, int C) override {
    const int V = int(dwte.numel / C);
    void* scratch = scratch_bytes(cuda::embedding_backward_scratch_bytes(N, V));
    cuda::embedding_backward(f32(dwte), bf(dout, "embedding"), i32(tokens), N, C, V, scratch, stream_);
  }
  void rmsnorm_forward(Tensor out, Tensor rstd, const Tensor& x, const Tensor& w, int N, int C, double eps) override {
    cuda::rmsnorm_forward(bf(out, "rmsnorm"), f32(rstd), bf(x, "rmsnorm"), bf(w, "rmsnorm"), N, C, float(eps), stream_);
  }
  void rmsnorm_backward(Tensor dx, Tensor dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                        const Tensor& rstd, int N, int C) override {
    void* scratch = scratch_bytes(cuda::rmsnorm_backward_scratch_bytes(N, C));
    cuda::rmsnorm_backward(bf(dx, "rmsnorm"), f32(dw), bf(dout, "rmsnorm"), bf(x, "rmsnorm"), bf(w, "rmsnorm"),
                           f32(rstd), N, C, scratch, stream_);
  }
  void matmul_forward(Tensor out, const Tensor& x, const Tensor& w, int N, int IC, int OC, int ld) override {
    // With padded rows (ld > OC) the GEMM runs at OC = ld on the zero-padded weight: the padding
    // columns come out zero.
    gemm_.forward(bf(out, "matmul"), bf(x, "matmul"), gemm_weight(w, IC, OC, ld), N, IC, ld, ld, stream_);
  }
  void matmul_forward_residual(Tensor out, const Tensor& x, const Tensor& w, const Tensor& residual, int N, int IC,
                               int OC) override {
    gemm_.forward_residual(bf(out, "matmul"), bf(x, "matmul"), bf(w, "matmul"), bf(residual, "matmul"), N, IC, OC,
                           stream_);
  }
  void matmul_backward(Tensor dx, Tensor dw, const Tensor& dout, const Tensor& x, const Tensor& w, int N, int IC,
                       int OC, int ld) override {
    if (dx.data)  // with padded rows, dout's zero padding meets the weight's zero rows
      gemm_.backward_input(bf(dx, "matmul"), bf(dout, "matmul"), gemm_weight(w, IC, OC, ld), N, IC, ld, ld, stream_);
    gemm_.backward_weight(f32(dw), bf(dout, "matmul"), bf(x, "matmul"), N, IC, OC, ld, stream_);  // OC is n here
  }
  void rope_forward(Tensor qkv, int B, int T, int H, int Hkv, int D, double theta) override {
    cuda::rope_forward(bf(qkv, "rope"), rope_table(T, D, theta), B, T, H, Hkv, D, stream_);
  }
  void rope_backward(Tensor dqkv, int B, int T, int H, int Hkv, int D, double theta) override {
    cuda::rope_backward(bf(dqkv, "rope"), rope_table(T, D, theta), B, T, H, Hkv, D, stream_);
  }
  void attention_forward(Tensor out, Tensor lse, const Tensor& qkv, int B, int T, int H, int Hkv, int D) override {
    const bf16* base = bf(qkv, "attention");
    sdpa_.forward(cuda::fused_qkv_shape(B, T, H, Hkv, D), base, base + cuda::fused_k_offset(H, D),
                  base + cuda::fused_v_offset(H, Hkv, D), bf(out, "attention"), f32(lse), scale(D), stream_);
  }
  void attention_backward(Tensor dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out, const Tensor& lse,
                          int B, int T, int H, int Hkv, int D) override {
    const bf16* base = bf(qkv, "attention");
    bf16* dbase = bf(dqkv, "attention");
    const int64_t ko = cuda::fused_k_offset(H, D), vo = cuda::fused_v_offset(H, Hkv, D);
    sdpa_.backward(cuda::fused_qkv_shape(B, T, H, Hkv, D), base, base + ko, base + vo, bf(out, "attention"),
                   bf(dout, "attention"), f32(lse), dbase, dbase + ko, dbase + vo, scale(D), stream_);
  }
  void swiglu_forward(Tensor out, const Tensor& gate_up, int N, int F) override {
    cuda::swiglu_forward(bf(out, "swiglu"), bf(gate_up, "swiglu"), N, F, stream_);
  }
  void swiglu_backward(Tensor dgate_up, const Tensor& dout, const Tensor& gate_up, int N, int F) override {
    cuda::swiglu_backward(bf(dgate_up, "swiglu"), bf(dout, "swiglu"), bf(gate_up, "swiglu"), N, F, stream_);
  }
  void residual_forward(Tensor out, const Tensor& a, const Tensor& b) override {
    cuda::residual_forward(bf(out, "residual"), bf(a, "residual"), bf(b, "residual"), out.numel, stream_);
  }
  void accumulate(Tensor dst, const Tensor& src) override {
    cuda::accumulate(bf(dst, "accumulate"), bf(src, "accumulate"), dst.numel, stream_);
  }
  void cross_entropy_forward(Tensor losses, Tensor lse, const Tensor& logits, const Tensor& targets, int N, int V,
                             int ld) override {
    cuda::cross_entropy_forward(f32(losses), f32(lse), bf(logits, "cross_entropy"), i32(targets), N, V, ld, stream_);
  }
  void cross_entropy_backward(Tensor dlogits, const Tensor& logits, const Tensor& lse, const Tensor& targets, int N,
                              int V, int ld, double dloss) override {
    cuda::cross_entropy_backward(bf(dlogits, "cross_entropy"), bf(logits, "cross_entropy"), f32(lse), i32(targets),
                                 N, V, ld, float(dloss), stream_);
  }
  double sum_squares(const Tensor& x) override {
    void* scratch = scratch_bytes(cuda::sum_squares_scratch_bytes(x.numel));
    cuda::sum_squares(reduce_result_, f32(x), x.numel, scratch, stream_);
    double result = 0.0;
    LH_CUDA_CHECK(cudaMemcpyAsync(&result, reduce_result_, sizeof result, cudaMemcpyDeviceToHost, stream_));
    synchronize();
    return result;
  }
  void scale_inplace(Tensor x, double s) override { cuda::scale_inplace(f32(x), x.numel, float(s), stream_); }
  void adamw_update(Tensor p, const Tensor& g, Tensor m, Tensor v, Tensor copy, double lr, double b1, double b2,
                    double eps, double wd, int step, double grad_scale) override {
    bf16* copy_ptr = copy.data ? bf(copy, "adamw") : nullptr;
    cuda::adamw_update(f32(p), f32(g), f32(m), f32(v), copy_ptr, p.numel, float(lr), float(b1), float(b2),
                       float(eps), float(wd), step, float(grad_scale), stream_);
  }

  // Lighthouse stages (lighthouse_kernels.h); the inverse index and the selection's sort spill
  // share the backend's scratch buffer (one stream: no two ops use it at once).
  using Geometry = lighthouse::Geometry;
  void lighthouse_pyramid_forward(Tensor qp, Tensor kp, Tensor vp, const Tensor& qkv, int B, int H, int Hkv, int D,
                                  const Geometry& g) override {
    cuda::lighthouse_pyramid_forward(bf(qp, "lighthouse"), bf(kp, "lighthouse"), bf(vp, "lighthouse"),
                                     bf(qkv, "lighthouse"), B, H, Hkv, D, g, stream_);
  }
  void lighthouse_pyramid_backward(Tensor dqkv, const Tensor& dqp, const Tensor& dkp, const Tensor& dvp, int B, int H,
                                   int Hkv, int D, const Geometry& g) override {
    cuda::lighthouse_pyramid_backward(bf(dqkv, "lighthouse"), bf(dqp, "lighthouse"), bf(dkp, "lighthouse"),
                                      bf(dvp, "lighthouse"), B, H, Hkv, D, g, stream_);
  }
  void lighthouse_norm_scores(Tensor score, const Tensor& pyr, int B, int Hx, int D, const Geometry& g) override {
    cuda::lighthouse_norm_scores(f32(score), bf(pyr, "lighthouse"), B, Hx, D, g, stream_);
  }
  void lighthouse_select(Tensor idx, const Tensor& sq, const Tensor& sk, int B, int H, int Hkv,
                         const Geometry& g) override {
    void* scratch = scratch_bytes(cuda::lighthouse_select_scratch_bytes(B, H, g));
    cuda::lighthouse_select(i32(idx), f32(sq), f32(sk), B, H, Hkv, g, scratch, stream_);
  }
  void lighthouse_gather_forward(Tensor sub, const Tensor& pyr, const Tensor& idx, int B, int H, int Hx, int D,
                                 const Geometry& g) override {
    cuda::lighthouse_gather_forward(bf(sub, "lighthouse"), bf(pyr, "lighthouse"), i32(idx), B, H, Hx, D, g, stream_);
  }
  void lighthouse_gather_backward(Tensor dpyr, const Tensor& dsub, const Tensor& idx, int B, int H, int Hx, int D,
                                  const Geometry& g) override {
    auto* inverse = static_cast<int32_t*>(scratch_bytes(cuda::lighthouse_inverse_bytes(B, H, g)));
    cuda::lighthouse_gather_backward(bf(dpyr, "lighthouse"), bf(dsub, "lighthouse"), i32(idx), B, H, Hx, D, g, inverse,
                                     stream_);
  }
  // The fused composites (lighthouse_kernels.h): level 0 is read from qkv, never copied.
  void lighthouse_select_gather(Tensor q, Tensor k, Tensor v, Tensor idx, const Tensor& qkv, Tensor qp, Tensor kp,
                                Tensor vp, Tensor sq, Tensor sk, int B, int H, int Hkv, int D,
                                const Geometry& g) override {
    const bf16* base = bf(qkv, "lighthouse");
    cuda::lighthouse_coarse_pyramid_scores_forward(bf(qp, "lighthouse"), bf(kp, "lighthouse"), bf(vp, "lighthouse"),
                                                   f32(sq), f32(sk), base, B, H, Hkv, D, g, stream_);
    lighthouse_select(idx, sq, sk, B, H, Hkv, g);
    const int row_heads = H + 2 * Hkv;
    const std::tuple<Tensor, const Tensor*, int, int> parts[] = {{q, &qp, H, 0}, {k, &kp, Hkv, H}, {v, &vp, Hkv, H + Hkv}};
    for (const auto& [sub, pyr, Hx, first_head] : parts)
      cuda::lighthouse_gather_forward(bf(sub, "lighthouse"), bf(*pyr, "lighthouse"), i32(idx), B, H, Hx, D, g, stream_,
                                      cuda::Level0Source{base, g.N, row_heads, first_head});
  }
  void lighthouse_gather_pyramid_backward(Tensor dqkv, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                          const Tensor& idx, Tensor dqp, Tensor dkp, Tensor dvp, int B, int H, int Hkv,
                                          int D, const Geometry& g) override {
    auto* inverse = static_cast<int32_t*>(scratch_bytes(cuda::lighthouse_inverse_bytes(B, H, g)));
    cuda::lighthouse_gather_pyramid_backward(bf(dqkv, "lighthouse"), bf(dq, "lighthouse"), bf(dk, "lighthouse"),
                                             bf(dv, "lighthouse"), i32(idx), bf(dqp, "lighthouse"),
                                             bf(dkp, "lighthouse"), bf(dvp, "lighthouse"), B, H, Hkv, D, g, inverse,
                                             stream_);
  }
  void lighthouse_sdpa_forward(Tensor o, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v, int BH, int S,
                               int D) override {
    sdpa_.forward(packed_shape(BH, S, D), bf(q, "lighthouse"), bf(k, "lighthouse"), bf(v, "lighthouse"),
                  bf(o, "lighthouse"), f32(lse), scale(D), stream_);
  }
  void lighthouse_sdpa_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                                const Tensor& v, const Tensor& o, const Tensor& lse, int BH, int S, int D) override {
    sdpa_.backward(packed_shape(BH, S, D), bf(q, "lighthouse"), bf(k, "lighthouse"), bf(v, "lighthouse"),
                   bf(o, "lighthouse"), bf(dout, "lighthouse"), f32(lse), bf(dq, "lighthouse"), bf(dk, "lighthouse"),
                   bf(dv, "lighthouse"), scale(D), stream_);
  }
  void lighthouse_scatter_forward(Tensor out, const Tensor& o, const Tensor& idx, int B, int H, int D,
                                  const Geometry& g) override {
    auto* inverse = static_cast<int32_t*>(scratch_bytes(cuda::lighthouse_inverse_bytes(B, H, g)));
    cuda::lighthouse_scatter_forward(bf(out, "lighthouse"), bf(o, "lighthouse"), i32(idx), B, H, D, g, inverse,
                                     stream_);
  }
  void lighthouse_scatter_backward(Tensor dsub, const Tensor& dout, const Tensor& idx, int B, int H, int D,
                                   const Geometry& g) override {
    cuda::lighthouse_scatter_backward(bf(dsub, "lighthouse"), bf(dout, "lighthouse"), i32(idx), B, H, D, g, stream_);
  }

 protected:
  void* raw_alloc(size_t bytes) override { return device_malloc(bytes, "buffer"); }

  // cudaMalloc under the --device-memory cap. Running out is an OutOfMemory (and cleared: it is not
  // sticky); any other error, e.g. a sticky one left by an earlier kernel, is reported as itself,
  // not as a lack of memory.
  void* device_malloc(size_t bytes, const std::string& what) {
    cap_.check(bytes, what);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      throw OutOfMemory(what + ": out of device memory");
    }
    LH_CUDA_CHECK(err);
    return p;
  }
  void raw_free(void* p) override { cudaFree(p); }

 private:
  void release() {
    if (scratch_) cudaFree(scratch_);
    if (reduce_result_) cudaFree(reduce_result_);
    if (order_event_) cudaEventDestroy(order_event_);
    if (comm_stream_) cudaStreamDestroy(comm_stream_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  static int select(int device) {
    LH_CUDA_CHECK(cudaSetDevice(device));
    return device;
  }
  static float scale(int D) { return 1.0f / std::sqrt(float(D)); }
  // Lighthouse's inner attention: BH independent heads of [S, D], contiguous ([1, BH, S, D]).
  static cuda::SdpaShape packed_shape(int BH, int S, int D) {
    cuda::SdpaShape sh;
    sh.b = 1, sh.hq = BH, sh.hk = BH, sh.s = S, sh.d = D;
    sh.q = {int64_t(BH) * S * D, int64_t(S) * D, D, 1};
    sh.k = sh.v = sh.o = sh.q;
    sh.stats = {int64_t(BH) * S, S, 1, 1};
    return sh;
  }

  // cuBLASLt's fast kernels need the output layer's OC (the vocabulary) itself a multiple of 8 in
  // its forward and dx GEMMs, where it is the contiguous extent of an operand; padded rows alone
  // leave them on byte-aligned kernels at 5-14% of peak (docs/benchmarks.md). So those two run at
  // OC = ld on a copy of the weight with ld - OC zero rows appended, in the scratch (a copy of
  // [V, C] bf16 per call: 0.5 MB at V = 257 and C = 1024, 103 MB at GPT-2's 50,257, taken up front
  // by prepare_matmul). Vocabularies that are multiples of 8 need none of this.
  static size_t padded_weight_bytes(int IC, int ld) { return size_t(ld) * IC * sizeof(bf16); }
  // The weight the forward and dx GEMMs take at OC = ld: w itself, or its zero-padded copy.
  const bf16* gemm_weight(const Tensor& w, int IC, int OC, int ld) {
    if (ld < OC) throw std::invalid_argument("matmul: row stride " + std::to_string(ld) + " < " + std::to_string(OC));
    if (ld == OC) return bf(w, "matmul");
    const size_t row_bytes = size_t(IC) * sizeof(bf16);
    auto* p = static_cast<char*>(scratch_bytes(padded_weight_bytes(IC, ld)));
    LH_CUDA_CHECK(cudaMemcpyAsync(p, bf(w, "matmul"), size_t(OC) * row_bytes, cudaMemcpyDeviceToDevice, stream_));
    LH_CUDA_CHECK(cudaMemsetAsync(p + size_t(OC) * row_bytes, 0, size_t(ld - OC) * row_bytes, stream_));
    return reinterpret_cast<const bf16*>(p);
  }

  void* scratch_bytes(size_t bytes) {
    if (bytes > scratch_size_) {
      synchronize();  // the old scratch may still be in use by queued kernels
      if (scratch_) LH_CUDA_CHECK(cudaFree(scratch_));
      scratch_ = nullptr;
      scratch_size_ = 0;
      scratch_ = device_malloc(bytes, "CUDA kernel scratch of " + format_bytes(bytes));
      scratch_size_ = bytes;
    }
    return scratch_;
  }

  // The (cos, sin) table of the CPU reference, one per (D, theta), as long as the longest sequence
  // so far: position t's row does not depend on the length, so shorter sequences read its start.
  const float* rope_table(int T, int D, double theta) {
    RopeTable& table = rope_tables_[std::make_pair(D, theta)];
    if (table.positions < T) {
      std::vector<float> host(size_t(T) * D);
      cpu::rope_cos_sin_table(host.data(), T, D, theta);
      table.values = Buffer();  // the shorter table goes first (cudaFree waits for its readers)
      table.positions = 0;      // none, should the allocation below fail
      table.values = allocate(DType::F32, host.size());
      copy_from_host(table.values.view(), host.data());
      table.positions = T;
    }
    return static_cast<const float*>(table.values.view().data);
  }
  void prepare_rope(int T, int D, double theta) override { rope_table(T, D, theta); }

  int device_;
  cudaStream_t stream_ = nullptr;
  cudaStream_t comm_stream_ = nullptr;  // created on first use (data-parallel runs only)
  cudaEvent_t order_event_ = nullptr;
  cuda::CublasLtMatmul gemm_;
  cuda::CudnnSdpa sdpa_;
  void* scratch_ = nullptr;
  size_t scratch_size_ = 0;
  cuda::MemoryCap cap_;  // limit_memory
  double* reduce_result_ = nullptr;
  struct RopeTable {
    int positions = 0;
    Buffer values;  // [positions, D / 2, 2] fp32
  };
  std::map<std::pair<int, double>, RopeTable> rope_tables_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace lh
