// The world-1 communicator: every collective over one rank is an identity, so only copies remain
// (when output and input differ). Buffers may be host memory (CPU backend) or device memory, so
// copies ask CUDA what the pointers are and fall back to memmove on machines without a GPU.
#include <cstring>

#include <cuda_runtime_api.h>

#include "lighthouse/dist.h"

namespace lh {
namespace {

bool on_device(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: plain host memory
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

// Returns true when the copy was enqueued on the device (so synchronize() must wait for it).
bool copy(void* dst, const void* src, size_t bytes, void* stream, const char* op) {
  if (dst == src || bytes == 0) return false;
  if (on_device(dst) || on_device(src)) {
    const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess) throw DistError(std::string("rank 0 (local): ") + op + ": " + cudaGetErrorString(e));
    return true;
  }
  std::memmove(dst, src, bytes);
  return false;
}

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(float*, size_t, void*) override { check("all_reduce_sum"); }
  void all_reduce_sum(double*, size_t, void*) override { check("all_reduce_sum"); }
  void reduce_scatter_sum(const float* in, float* out, size_t n_per_rank, void* stream) override {
    check("reduce_scatter_sum");
    device_work_ |= copy(out, in, n_per_rank * sizeof(float), stream, "reduce_scatter_sum");
  }
  void all_gather(const void* in, void* out, size_t bytes_per_rank, void* stream) override {
    check("all_gather");
    device_work_ |= copy(out, in, bytes_per_rank, stream, "all_gather");
  }
  void synchronize(void* stream) override {
    check("synchronize");
    // Host copies are already done; device copies finish with the stream. Without device work no
    // CUDA call is made, so CPU-only machines never touch the driver here.
    if (device_work_) {
      const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
      if (e != cudaSuccess) throw DistError(std::string("rank 0 (local): synchronize: ") + cudaGetErrorString(e));
    }
  }
  void barrier() override { check("barrier"); }
  void abort() override { aborted_ = true; }

 private:
  // Same contract as NCCL: an aborted communicator refuses further work.
  void check(const char* op) const {
    if (aborted_) throw DistError(std::string("rank 0 (local): ") + op + " after abort()");
  }
  bool aborted_ = false;
  bool device_work_ = false;
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

}  // namespace lh
