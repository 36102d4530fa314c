// Data parallelism foundations: one process per GPU, launched torchrun-style or by Slurm, NCCL for
// collectives (docs/distributed.md). This header holds what the trainer needs and what can be
// tested without a GPU: the launch environment, a TCP rendezvous that hands rank 0's NCCL unique id
// to every rank, the ZeRO-1 bucket and shard arithmetic and the communicator interface.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lh {

// Any misconfiguration or failure of the distributed machinery; messages name the variable, the
// rank or the address involved.
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---- launch environment (src/dist/dist_env.cpp) --------------------------------------------------
struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // index on this node; the rank uses CUDA device local_rank
  int local_world_size = 1;  // ranks on this node
  std::string master_addr;   // where rank 0 listens for the rendezvous (empty for a single process)
  int master_port = 0;       // the rendezvous port
  std::string port_note;     // where master_port came from when not MASTER_PORT itself (for messages)
  std::string source = "single";  // "torchrun", "slurm" or "single": where the values came from
  // How long a collective may wait for the slowest rank before the job is aborted: generous, as a
  // rank can lag by a validation pass or a checkpoint write. LH_DIST_TIMEOUT_S (whole seconds >= 1).
  std::chrono::milliseconds collective_timeout = std::chrono::seconds(600);

  bool distributed() const { return world_size > 1; }
  std::string describe() const;  // one line for logs, e.g. "rank 3/8 (local 3/4) via slurm, master n1:29500"
  // Throws std::runtime_error saying what needs it unless this machine has CUDA device local_rank.
  void require_gpu(const std::string& what) const;
};

// Reads, in order of precedence: torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; used when RANK or WORLD_SIZE is set), then Slurm
// (SLURM_PROCID with SLURM_NTASKS), else a single process. LH_DIST_ENV=single|torchrun|slurm forces
// a source (e.g. `single` inside an sbatch script that runs one process without srun). Under
// torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE=True) the agent holds MASTER_PORT, so the
// rendezvous uses MASTER_PORT + 1; LH_RENDEZVOUS_PORT sets the port outright under any launcher.
// LH_DIST_TIMEOUT_S sets collective_timeout. Throws DistError naming the variable on malformed or inconsistent values.
DistEnv detect_dist_env();

// A TCP port that was free on every IPv4 interface a moment ago (the kernel picks it); for local
// launches and tests.
int find_free_port();

// ---- rendezvous (src/dist/rendezvous.cpp) --------------------------------------------------------
// Every rank calls this once with the same DistEnv shape. Rank 0 listens on master_port (all IPv4
// interfaces) and waits for the world_size - 1 other ranks, which connect to master_addr:master_port
// (retrying until the deadline) and announce their rank. Rank 0 then sends them `payload` (what
// rank 0 passed; other ranks pass anything, usually empty) and completes a barrier: when any rank
// returns, every rank has connected and received the payload. Returns rank 0's payload on every rank.
// On timeout rank 0's error lists the ranks that never arrived; another rank's error names the
// master address. Duplicate ranks and disagreeing world sizes fail on every connected rank.
std::vector<uint8_t> rendezvous_broadcast(const DistEnv& env, const std::vector<uint8_t>& payload,
                                          std::chrono::milliseconds timeout);

// ---- ZeRO-1 sharding in buckets (src/dist/shard.cpp) ---------------------------------------------
// A flat buffer of `total` elements (parameters, gradients) is padded to padded_total() =
// world_size * shard_count(), shard_count() = ceil(total / world_size) rounded up to `align`, and
// cut from its END into buckets of bucket_elements rounded up to a multiple of world_size * align
// (the bucket at offset 0 takes what is left, also such a multiple). Every bucket splits into
// world_size equal chunks and rank r owns chunk r of every bucket. Backward finishes gradients from
// the end of the layout, so bucket 0 is ready first and each bucket is one reduce-scatter (into the
// owner's contiguous shard buffer, at shard_offset) that can run while backward goes on; after the
// optimizer, one in-place all-gather per bucket spreads the updated weights. A rank's chunks add up
// to shard_count() elements. The padding (fewer than world_size * align elements, at the end) is
// zero in gradients and weights and stays zero.
// The trainer's `align`: chunk boundaries are multiples of this many elements (256 bytes of fp32)
// for aligned access.
inline constexpr size_t kShardAlign = 64;
size_t shard_count(size_t total, int world_size, size_t align);   // elements per rank, padded
size_t padded_total(size_t total, int world_size, size_t align);  // world_size * shard_count

struct ShardBucket {
  size_t begin = 0, end = 0;  // elements [begin, end) of the padded buffer
  size_t chunk = 0;           // (end - begin) / world_size: what each rank owns of the bucket
  size_t shard_offset = 0;    // where every rank keeps its chunk of this bucket in its shard buffer
  size_t owned_begin(int rank) const { return begin + size_t(rank) * chunk; }
};
// Buckets in backward order: buckets[0] ends at padded_total(), the last begins at 0; together they
// tile the padded buffer. shard_offset grows with `begin`, so a shard buffer is in layout order.
// Throws DistError for bucket_elements == 0 (and what shard_count() rejects).
std::vector<ShardBucket> plan_shard_buckets(size_t total, int world_size, size_t align, size_t bucket_elements);

// ---- communicators (src/dist/local_communicator.cpp, nccl_communicator.cpp) ----------------------
// Collectives over all ranks. `stream` is a cudaStream_t (nullptr: the legacy default stream); the
// calls enqueue work on it and return, synchronize() waits for it. Buffers are device memory for
// NCCL; the local communicator also accepts host memory. Errors throw DistError naming the rank and
// the collective; after a failure or abort() the communicator is unusable.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // data[0, n) = sum over ranks of data[0, n), in place. Doubles for host scalars (losses, the
  // gradient norm's sum of squares), which keep their precision and range across ranks.
  virtual void all_reduce_sum(float* data, size_t n, void* stream) = 0;
  virtual void all_reduce_sum(double* data, size_t n, void* stream) = 0;
  // out[0, n_per_rank) = sum over ranks of in[rank * n_per_rank, (rank + 1) * n_per_rank).
  // `in` holds world_size * n_per_rank elements; out may alias in + rank * n_per_rank.
  virtual void reduce_scatter_sum(const float* in, float* out, size_t n_per_rank, void* stream) = 0;
  // Collectives called between group_start() and group_end() are launched together (every rank
  // must call the same ones in the same order, as for any collective).
  virtual void group_start() {}
  virtual void group_end() {}
  // out[r * bytes_per_rank, ...) = rank r's in[0, bytes_per_rank); in may alias
  // out + rank * bytes_per_rank (in place).
  virtual void all_gather(const void* in, void* out, size_t bytes_per_rank, void* stream) = 0;
  // Blocks until the work enqueued on `stream` is done; fails (aborting) after the timeout.
  virtual void synchronize(void* stream) = 0;
  // Blocks until every rank has called barrier(); fails (aborting) after the timeout.
  virtual void barrier() = 0;
  // Tears the communicator down without waiting for peers (e.g. after another rank failed).
  virtual void abort() = 0;
};

// The world-1 communicator: the Communicator contract for one rank, reductions as identities
// (copies when the output is a different buffer), barrier at once. A one-rank training run needs
// no communicator at all (the trainer makes none); this one serves code and tests written against
// the interface.
std::unique_ptr<Communicator> make_local_communicator();

// An NCCL communicator on CUDA device `device` (normally env.local_rank). Rank 0 creates the
// unique id and hands it out through rendezvous_broadcast(); the communicator is non-blocking, and
// every wait (init, synchronize, barrier, teardown) polls NCCL's asynchronous error and aborts
// after `timeout`, so a dead peer produces an error naming this rank instead of a hang.
std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv& env, int device,
                                                     std::chrono::milliseconds timeout);

}  // namespace lh
