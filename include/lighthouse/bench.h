// Benchmarks behind `lighthouse bench`: timings are medians over iterations after warm-up, each
// iteration synchronised; results are JSON records (docs/benchmarks.md collects them).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lighthouse/backend.h"
#include "lighthouse/config.h"

namespace lh {

struct AttentionBenchOptions {
  std::vector<int> seq_lens{4096, 8192, 16384, 32768, 65536, 131072};
  int batch = 1, heads = 8, kv_heads = 8, head_dim = 128;
  int warmup = 3, iters = 10;
  bool deterministic = true;
};
// Dense causal attention forward and forward+backward of one layer per sequence length.
// FLOPs counted: forward 2 * B * H * N^2 * d (two matmuls over the causal half), backward 2.5x that.
nlohmann::json bench_attention(Backend& be, const AttentionBenchOptions& o);
// Throws std::runtime_error naming the flags unless kv_heads divides heads.
void check_heads(int heads, int kv_heads);

struct LighthouseBenchOptions {
  std::vector<int> seq_lens{16384, 32768, 65536, 98304, 131072};
  int batch = 1, heads = 8, kv_heads = 8, head_dim = 128;
  int levels = 3, pooling = 4, topk = 1536;  // k drops to the largest valid multiple of 128 where needed
  int warmup = 2, iters = 5;
  int max_dense_len = 131072;  // dense attention is timed only up to this N (it grows as N^2)
  bool deterministic = true;   // false: cuDNN's atomic backward (O(S) workspace, for S beyond ~200K)
};
// One Lighthouse attention layer forward+backward (the AttentionOp, end to end) per sequence
// length, a per-stage breakdown (each Backend call synchronised) and dense attention at the same N.
nlohmann::json bench_lighthouse(Backend& be, const LighthouseBenchOptions& o);

struct TrainBenchOptions {
  int warmup = 2, steps = 5;
  double peak_tflops = 989.0;  // H100 SXM dense bf16; MFU is relative to this
  // Where to write a Chrome trace of the timed steps' GPU work (kernel_trace.h); empty: none. The
  // result then also holds the trace's summary (busy time, idle gaps, time per kernel).
  std::string trace_path;
};
// Full training steps (forward, backward, optimizer) on random tokens. Model FLOPs per token:
// 6 * (parameters excluding the embedding) + 6 * n_layers * T * q_dim (causal attention: the
// 12 * L * T * d of the PaLM formula, halved for the mask).
nlohmann::json bench_train(Backend& be, const Config& cfg, const TrainBenchOptions& o);

// The memory-bound CUDA kernels at 32768 x 1024: GB/s each, against cudaMemcpy device-to-device.
void bench_cuda_kernels();

struct GemmBenchOptions {
  int candidates = 0;  // also time the cuBLASLt heuristic's first candidates, this many
  int warmup = 3, iters = 20;
  double peak_tflops = 989.0;  // H100 SXM dense bf16
};
// The model's GEMMs through cuBLASLt on the CUDA device, at data.micro_batch * data.seq_len tokens:
// per layer qkv, wo, gate_up and down, and the lm head, each forward (with the residual add in
// the epilogue where the model has it), dx and dW (fp32, accumulated), with the algorithm tuned
// as training tunes it (kernels/cuda/cublaslt_tuning.cpp; here on the benchmark's operands).
// FLOPs 2 * tokens * in * out each; ms, TFLOP/s and % of peak, the heuristic's first choice's ms
// beside it, and their sums over one training step (no recomputation).
nlohmann::json bench_gemms(const Config& cfg, const GemmBenchOptions& o);

}  // namespace lh
