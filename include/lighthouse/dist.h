// Data parallelism foundations: one process per GPU, launched torchrun-style or by Slurm, NCCL for
// collectives (docs/distributed.md). This header holds what the trainer needs and what can be
// tested without a GPU: the launch environment, a TCP rendezvous that hands rank 0's NCCL unique id
// to every rank, ZeRO-1 shard arithmetic, the gradient bucket plan and the communicator interface.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lh {

class ParamLayout;

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
  int master_port = 0;
  std::string source = "single";  // "torchrun", "slurm" or "single": where the values came from

  bool distributed() const { return world_size > 1; }
  std::string describe() const;  // one line for logs, e.g. "rank 3/8 (local 3/4) via slurm, master n1:29500"
};

// Reads, in order of precedence: torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; used when RANK or WORLD_SIZE is set), then Slurm
// (SLURM_PROCID with SLURM_NTASKS), else a single process. LH_DIST_ENV=single|torchrun|slurm forces
// a source (e.g. `single` inside an sbatch script that runs one process without srun). Throws
// DistError naming the variable on malformed or inconsistent values.
DistEnv detect_dist_env();

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it); for local launches.
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

// ---- ZeRO-1 sharding (src/dist/shard.cpp) --------------------------------------------------------
// A flat buffer of `total` elements is viewed as padded to padded_total() = world_size * count,
// count = shard_count() = ceil(total / world_size) rounded up to a multiple of `align`. Rank r owns
// [r * count, (r + 1) * count) of the padded buffer, which is exactly the chunk ncclReduceScatter
// delivers to rank r and the chunk an in-place ncclAllGather reads from it, so neither needs a copy.
// shard_range() is that chunk clipped to [0, total): ranges are disjoint, contiguous, in rank order
// and cover [0, total) exactly; every boundary but `total` is a multiple of `align`. The padding
// (fewer than world_size * align elements, all on the last ranks) is zero in gradients and weights
// and stays zero under AdamW, so every rank does the same `count` elements of optimizer work.
struct ShardRange {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
  bool empty() const { return end == begin; }
};
size_t shard_count(size_t total, int world_size, size_t align);   // elements per rank, padded
size_t padded_total(size_t total, int world_size, size_t align);  // world_size * shard_count
ShardRange shard_range(size_t total, int rank, int world_size, size_t align);

// A bucket [begin, end) of the flat buffer cut at shard boundaries (shards of `count` elements, as
// above): each piece lies in one rank's shard, `owner`. Reducing every piece to its owner is a
// reduce-scatter done bucket by bucket, so buckets can be reduced while backward still runs and the
// shard layout stays the one contiguous chunk per rank that the optimizer and checkpoints use.
struct OwnedPiece {
  size_t begin = 0, end = 0;
  int owner = 0;
  size_t size() const { return end - begin; }
};
std::vector<OwnedPiece> split_by_owner(size_t begin, size_t end, size_t count);

// ---- gradient buckets (src/dist/buckets.cpp) -----------------------------------------------------
// Backward produces parameter gradients in reverse layout order, so gradients are reduced in
// buckets of consecutive parameters taken from the END of the layout: bucket 0 holds the last
// parameters (lm_head, final_norm, the last layer...) and is ready first. Each bucket is one
// contiguous element range of the flat gradient buffer; together they cover [0, layout.total())
// in descending order without gaps or overlap.
struct GradBucket {
  size_t begin = 0, end = 0;  // element range in the flat gradient buffer
  size_t first_entry = 0;     // entries [first_entry, last_entry] of layout.entries() (layout order)
  size_t last_entry = 0;
  size_t size() const { return end - begin; }
};
// Greedy: a bucket takes parameters (in reverse order) while its size stays <= bucket_bytes; a
// parameter bigger than bucket_bytes gets a bucket to itself. bucket_bytes must be > 0.
std::vector<GradBucket> plan_grad_buckets(const ParamLayout& layout, size_t bucket_bytes,
                                          size_t bytes_per_element = sizeof(float));

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
  // data[0, n) = sum over ranks of data[0, n), in place.
  virtual void all_reduce_sum(float* data, size_t n, void* stream) = 0;
  // out[0, n_per_rank) = sum over ranks of in[rank * n_per_rank, (rank + 1) * n_per_rank).
  // `in` holds world_size * n_per_rank elements; out may alias in + rank * n_per_rank.
  virtual void reduce_scatter_sum(const float* in, float* out, size_t n_per_rank, void* stream) = 0;
  // On rank `root`: data[0, n) = sum over ranks of data[0, n), in place. Other ranks' data is only
  // read. Different roots within one group run concurrently.
  virtual void reduce_sum(float* data, size_t n, int root, void* stream) = 0;
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

// The world-1 communicator for CPU runs and tests: reductions are identities (copies when the
// output is a different buffer), barrier returns at once.
std::unique_ptr<Communicator> make_local_communicator();

// An NCCL communicator on CUDA device `device` (normally env.local_rank). Rank 0 creates the
// unique id and hands it out through rendezvous_broadcast(); the communicator is non-blocking, and
// every wait (init, synchronize, barrier, teardown) polls NCCL's asynchronous error and aborts
// after `timeout`, so a dead peer produces an error naming this rank instead of a hang.
std::unique_ptr<Communicator> make_nccl_communicator(const DistEnv& env, int device,
                                                     std::chrono::milliseconds timeout);

}  // namespace lh
