// The NCCL communicator. Blocking NCCL hangs forever when a peer dies (its kernels spin waiting for
// data that never comes), which on a cluster burns the whole allocation. So the communicator is
// created non-blocking and every wait is a poll loop over the CUDA stream and
// ncclCommGetAsyncError with a deadline; on error or timeout it aborts the communicator (which
// also releases the spinning kernels) and throws naming this rank and the collective.
#include <cstring>
#include <string>
#include <thread>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "lighthouse/dist.h"

namespace lh {
namespace {

using Clock = std::chrono::steady_clock;

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const DistEnv& env, int device, std::chrono::milliseconds timeout)
      : rank_(env.rank), world_(env.world_size), timeout_(timeout) {
    try {
      init(env, device);
    } catch (...) {
      release();  // the destructor does not run for a constructor that throws
      throw;
    }
  }

  ~NcclCommunicator() override {
    // Finalize flushes outstanding work and lets peers finish; if that stalls or fails, abort
    // instead. A destructor must not throw, so failures here only lose the communicator.
    if (comm_) {
      ncclResult_t state = ncclCommFinalize(comm_);
      const auto deadline = Clock::now() + timeout_;
      while (state == ncclInProgress || state == ncclSuccess) {
        if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) break;
        if (state != ncclInProgress || Clock::now() > deadline) break;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (state == ncclSuccess) ncclCommDestroy(comm_);
      else ncclCommAbort(comm_);
    }
    release();
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void all_reduce_sum(float* data, size_t n, void* stream) override {
    begin("all_reduce_sum", n);
    after_call(ncclAllReduce(data, data, n, ncclFloat32, ncclSum, comm_, s(stream)));
  }
  void all_reduce_sum(double* data, size_t n, void* stream) override {
    begin("all_reduce_sum", n);
    after_call(ncclAllReduce(data, data, n, ncclFloat64, ncclSum, comm_, s(stream)));
  }
  void reduce_scatter_sum(const float* in, float* out, size_t n_per_rank, void* stream) override {
    begin("reduce_scatter_sum", n_per_rank);
    after_call(ncclReduceScatter(in, out, n_per_rank, ncclFloat32, ncclSum, comm_, s(stream)));
  }
  void group_start() override {
    usable("group_start");
    after_call(ncclGroupStart());
    in_group_ = true;
  }
  void group_end() override {
    usable("group_end");
    in_group_ = false;
    op_ = "group_end";
    after_call(ncclGroupEnd());
  }
  void all_gather(const void* in, void* out, size_t bytes_per_rank, void* stream) override {
    begin("all_gather", bytes_per_rank);
    after_call(ncclAllGather(in, out, bytes_per_rank, ncclUint8, comm_, s(stream)));
  }

  void synchronize(void* stream) override {
    usable("synchronize");
    const auto deadline = Clock::now() + timeout_;
    for (;;) {
      const cudaError_t q = cudaStreamQuery(s(stream));
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) {
        abort();
        throw DistError(where(op_) + ": CUDA error while waiting: " + cudaGetErrorString(q));
      }
      check_async();
      if (Clock::now() > deadline) timeout_abort("did not complete");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void barrier() override {
    all_reduce_sum(static_cast<float*>(scratch_), 1, own_stream_);
    op_ = "barrier";
    synchronize(own_stream_);
  }

  void abort() override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
  }

 private:
  void init(const DistEnv& env, int device) {
    cuda(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
    cuda(cudaStreamCreateWithFlags(&own_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc");
    cuda(cudaMemset(scratch_, 0, sizeof(float)), "cudaMemset");  // the barrier's all-reduce reads it
    // Rank 0 makes the id (it embeds rank 0's bootstrap address) and hands it to every rank.
    ncclUniqueId id{};
    if (rank_ == 0) {
      op_ = "ncclGetUniqueId";
      const ncclResult_t r = ncclGetUniqueId(&id);
      if (r != ncclSuccess) fail_now(r);
    }
    std::vector<uint8_t> mine(reinterpret_cast<uint8_t*>(&id), reinterpret_cast<uint8_t*>(&id) + sizeof(id));
    const std::vector<uint8_t> got = rendezvous_broadcast(env, mine, timeout_);
    if (got.size() != sizeof(id))
      throw DistError(where("init") + ": rank 0 sent a " + std::to_string(got.size()) + "-byte NCCL id, expected " +
                      std::to_string(sizeof(id)) + " (different NCCL versions?)");
    std::memcpy(&id, got.data(), sizeof(id));

    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // calls return ncclInProgress; we poll (see the top of the file)
    op_ = "ncclCommInitRank";
    const ncclResult_t r = ncclCommInitRankConfig(&comm_, world_, id, rank_, &config);
    if (r != ncclSuccess && r != ncclInProgress) fail_now(r);
    wait_enqueued();
  }

  void release() {
    if (scratch_) cudaFree(scratch_);
    if (own_stream_) cudaStreamDestroy(own_stream_);
    scratch_ = nullptr;
    own_stream_ = nullptr;
  }

  static cudaStream_t s(void* stream) { return static_cast<cudaStream_t>(stream); }

  std::string where(const std::string& op) const {
    return "rank " + std::to_string(rank_) + "/" + std::to_string(world_) + ": NCCL " + op;
  }

  void usable(const char* op) const {
    if (!comm_) throw DistError(where(op) + ": the communicator was aborted after an earlier failure");
  }

  void begin(const char* op, size_t n) {
    usable(op);
    op_ = std::string(op) + "(" + std::to_string(n) + ")";
  }

  void after_call(ncclResult_t r) {
    if (r != ncclSuccess && r != ncclInProgress) fail_now(r);
    // Inside a group NCCL only records the call; the whole group is enqueued by ncclGroupEnd.
    if (r == ncclInProgress && !in_group_) wait_enqueued();
  }

  // A non-blocking call returned ncclInProgress: NCCL finishes the call (init, or enqueueing a
  // collective) in the background; the communicator must not be used until it reports done.
  void wait_enqueued() {
    const auto deadline = Clock::now() + timeout_;
    for (;;) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) fail_now(r);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail_now(state);
      if (Clock::now() > deadline) timeout_abort("was still being set up (connecting to peers?)");
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  void check_async() {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    if (r != ncclSuccess) fail_now(r);
    if (state != ncclSuccess && state != ncclInProgress) fail_now(state);
  }

  [[noreturn]] void fail_now(ncclResult_t r) {
    std::string detail = ncclGetErrorString(r);
    if (comm_) {
      const char* last = ncclGetLastError(comm_);
      if (last && *last) detail += " (" + std::string(last) + ")";
    }
    if (r == ncclRemoteError) detail += "; another rank failed";
    abort();
    throw DistError(where(op_) + " failed: " + detail);
  }

  [[noreturn]] void timeout_abort(const char* what) {
    abort();
    throw DistError(where(op_) + " " + what + " within " + std::to_string(timeout_.count()) +
                    " ms; aborted the communicator (a peer likely died, hung or never called it)");
  }

  void cuda(cudaError_t e, const std::string& what) const {
    if (e != cudaSuccess)
      throw DistError("rank " + std::to_string(rank_) + ": " + what + " failed: " + cudaGetErrorString(e));
  }

  int rank_, world_;
  std::chrono::milliseconds timeout_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t own_stream_ = nullptr;  // for barrier(), so it does not wait on the caller's streams
  void* scratch_ = nullptr;
  bool in_group_ = false;
  std::string op_ = "init";  // the last operation started, for error messages
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv& env, int device,
                                                     std::chrono::milliseconds timeout) {
  return std::make_unique<NcclCommunicator>(env, device, timeout);
}

}  // namespace lh
