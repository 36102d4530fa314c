// An in-process Communicator for tests: N ranks as N threads over host memory (the CPU backend),
// so the data-parallel trainer can be checked without GPUs or NCCL. Every collective is two or
// three barriers around plain loops in rank order, which makes it deterministic.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "lighthouse/dist.h"

namespace lh::testing {

class ThreadGroup {
 public:
  explicit ThreadGroup(int world) : world_(world), slots_(world) {}
  int world() const { return world_; }
  void barrier() {
    std::unique_lock<std::mutex> lock(mu_);
    if (broken_) throw std::runtime_error("thread communicator: an earlier collective timed out");
    const long generation = generation_;
    if (++arrived_ == world_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else if (!cv_.wait_for(lock, std::chrono::seconds(120), [&] { return generation_ != generation || broken_; }) ||
               broken_) {
      // A rank that left without its collective fails the test instead of hanging it; every later
      // collective of the group fails too.
      broken_ = true;
      cv_.notify_all();
      throw std::runtime_error("thread communicator: the other ranks did not reach a collective within 120 s");
    }
  }
  std::vector<const void*>& slots() { return slots_; }

 private:
  int world_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  long generation_ = 0;
  bool broken_ = false;
  std::vector<const void*> slots_;  // each rank's published buffer for the current collective
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank) : g_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return g_->world(); }

  void all_reduce_sum(float* data, size_t n, void*) override { all_reduce(data, n); }
  void all_reduce_sum(double* data, size_t n, void*) override { all_reduce(data, n); }
  void reduce_scatter_sum(const float* in, float* out, size_t n, void*) override {
    std::vector<float> sum = reduce(in, size_t(rank_) * n, n);
    g_->barrier();
    std::memcpy(out, sum.data(), n * sizeof(float));
  }
  void all_gather(const void* in, void* out, size_t bytes, void*) override {
    publish(in);
    for (int q = 0; q < world_size(); ++q)
      if (q != rank_) std::memcpy(static_cast<char*>(out) + size_t(q) * bytes, g_->slots()[q], bytes);
    if (static_cast<const char*>(in) != static_cast<char*>(out) + size_t(rank_) * bytes)
      std::memmove(static_cast<char*>(out) + size_t(rank_) * bytes, in, bytes);
    g_->barrier();  // nobody changes its input before everyone has copied it
  }
  void synchronize(void*) override {}
  void barrier() override { g_->barrier(); }
  void abort() override {}

 private:
  void publish(const void* p) {
    g_->slots()[rank_] = p;
    g_->barrier();
  }
  template <typename T> void all_reduce(T* data, size_t n) {
    std::vector<T> sum = reduce(data, 0, n);
    g_->barrier();  // everyone has read every input
    std::memcpy(data, sum.data(), n * sizeof(T));
  }
  // sum over ranks (in rank order) of their elements [offset, offset + n)
  template <typename T> std::vector<T> reduce(const T* mine, size_t offset, size_t n) {
    publish(mine);
    std::vector<T> sum(n, T(0));
    for (int q = 0; q < world_size(); ++q) {
      const T* src = static_cast<const T*>(g_->slots()[q]) + offset;
      for (size_t i = 0; i < n; ++i) sum[i] += src[i];
    }
    return sum;
  }

  std::shared_ptr<ThreadGroup> g_;
  int rank_;
};

}  // namespace lh::testing
