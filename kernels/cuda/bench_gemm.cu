// `lighthouse bench gemm`: the model's GEMMs alone, at the shapes one training step runs, so that
// their share of the step can be set against the card's peak (bench.h).
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.cuh"
#include "cublaslt_matmul.h"
#include "lighthouse/bench.h"

namespace lh {
namespace {
using bf16 = __nv_bfloat16;

struct Projection {
  const char* name;
  int in, out;
  bool residual;  // the forward adds the residual stream in the GEMM's epilogue
  int per_step;   // how many of it one step runs (n_layers, or 1 for the lm head; 0: not run)
  int ld;         // row stride of the [tokens, out] matrix; forward and dx run at out = ld as the
                  // CUDA backend runs them (on a weight padded with zero rows), dW at out
};

// The projections of LlamaModel (src/model/llama.cpp), which this list must follow.
std::vector<Projection> projections(const ModelConfig& m) {
  std::vector<Projection> list = {{"qkv", m.dim, m.qkv_dim(), false, m.n_layers, m.qkv_dim()},
                                  {"wo", m.q_dim(), m.dim, true, m.n_layers, m.dim},
                                  {"gate_up", m.dim, 2 * m.ffn_hidden, false, m.n_layers, 2 * m.ffn_hidden},
                                  {"down", m.ffn_hidden, m.dim, true, m.n_layers, m.dim},
                                  {"lm_head", m.dim, m.vocab_size, false, 1, m.logits_row_stride()}};
  // What the padding saves (not part of the step).
  if (m.logits_row_stride() != m.vocab_size) list.push_back({"lm_unpad", m.dim, m.vocab_size, false, 0, m.vocab_size});
  return list;
}

// A device buffer of n pseudo-random values, freed on scope exit.
template <typename T>
struct Filled {
  T* p;
  Filled(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f)
      : p(cuda::bench::alloc_fill<T>(n, seed, lo, hi)) {}
  ~Filled() { cudaFree(p); }
  Filled(const Filled&) = delete;
  Filled& operator=(const Filled&) = delete;
};

}  // namespace

nlohmann::json bench_gemms(const Config& cfg, const GemmBenchOptions& o) {
  if (o.candidates < 0) throw std::invalid_argument("bench gemm: --candidates must not be negative");
  const int N = cfg.data.micro_batch * cfg.data.seq_len;
  int device = 0;
  LH_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  LH_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::printf("GEMMs of the model at %d tokens (micro_batch %d x seq_len %d) on %s; %% of %.0f TFLOP/s\n", N,
              cfg.data.micro_batch, cfg.data.seq_len, prop.name, o.peak_tflops);
  std::printf("%-8s %-4s %6s %6s %9s %9s %6s %9s  %s\n", "gemm", "op", "in", "out", "ms", "TFLOP/s", "%peak",
              "1st ms", "algorithm (training's; then, with --candidates, the heuristic's list)");
  cuda::CublasLtMatmul mm;
  nlohmann::json rows = nlohmann::json::array();
  double step_ms = 0.0, first_step_ms = 0.0, step_flop = 0.0;
  for (const Projection& p : projections(cfg.model)) {
    const size_t nx = size_t(N) * p.in, ny = size_t(N) * p.ld, nw = size_t(p.in) * p.ld;
    const Filled<bf16> x_buf(nx, 1), y_buf(ny, 2), w_buf(nw, 3, -0.05f, 0.05f), residual_buf(ny, 4), dx_buf(nx, 5);
    const Filled<float> dw_buf(nw, 6);
    bf16 *x = x_buf.p, *y = y_buf.p, *w = w_buf.p, *residual = residual_buf.p, *dx = dx_buf.p;
    float* dw = dw_buf.p;
    const std::function<void()> ops[] = {
        [&] {
          if (p.residual)
            mm.forward_residual(y, x, w, residual, N, p.in, p.out, nullptr);
          else
            mm.forward(y, x, w, N, p.in, p.ld, p.ld, nullptr);
        },
        [&] { mm.backward_input(dx, y, w, N, p.in, p.ld, p.ld, nullptr); },
        [&] { mm.backward_weight(dw, y, x, N, p.in, p.out, p.ld, nullptr); }};
    const char* op_names[] = {"fwd", "dx", "dW"};
    const double flop = 2.0 * N * p.in * p.out;  // useful FLOPs: not the padding's
    for (int op = 0; op < 3; ++op) {
      // What training runs: by default the tuned choice (cublaslt_tuning.cpp), here tuned on these
      // operands.
      mm.set_algorithm_choice(cuda::CublasLtMatmul::default_choice());
      const float ms = cuda::bench::time_ms(ops[op], o.warmup, o.iters);
      const double tflops = flop / (ms * 1e-3) / 1e12;
      const std::string algorithm = mm.last_algorithm(), tuning = mm.last_tuning();
      mm.set_algorithm_choice(0);  // the heuristic's first choice, for comparison
      const float first_ms = cuda::bench::time_ms(ops[op], o.warmup, o.iters);
      std::printf("%-8s %-4s %6d %6d %9.3f %9.1f %6.1f %9.3f  %s\n", p.name, op_names[op], p.in, p.out, ms, tflops,
                  100.0 * tflops / o.peak_tflops, first_ms, algorithm.c_str());
      std::printf("%-8s tuning: %s\n", "", tuning.c_str());
      nlohmann::json candidates = nlohmann::json::array();
      for (int rank = 0; rank < o.candidates; ++rank) {
        mm.set_algorithm_choice(rank);
        float rank_ms = 0.0f;
        try {
          rank_ms = cuda::bench::time_ms(ops[op], o.warmup, o.iters);
        } catch (const std::out_of_range&) {
          break;  // the heuristic offers fewer candidates for this shape
        } catch (const std::runtime_error& e) {
          std::printf("%-8s %-4s %6s %6s  rank %d failed: %s\n", "", "", "", "", rank, e.what());
          continue;
        }
        const double rank_tflops = flop / (rank_ms * 1e-3) / 1e12;
        const std::string algo = mm.last_algorithm();
        std::printf("%-8s %-4s %6s %6s %9.3f %9.1f %6.1f %9s  %s\n", "", "", "", "", rank_ms, rank_tflops,
                    100.0 * rank_tflops / o.peak_tflops, "", algo.c_str());
        candidates.push_back({{"rank", rank}, {"ms", rank_ms}, {"tflops", rank_tflops}, {"algorithm", algo}});
      }
      step_ms += ms * p.per_step;
      first_step_ms += first_ms * p.per_step;
      step_flop += flop * p.per_step;
      rows.push_back({{"gemm", p.name}, {"op", op_names[op]}, {"tokens", N}, {"in", p.in}, {"out", p.out}, {"ld", p.ld},
                      {"per_step", p.per_step}, {"flop", flop}, {"ms", ms}, {"tflops", tflops},
                      {"first_choice_ms", first_ms}, {"algorithm", algorithm}, {"tuning", tuning},
                      {"candidates", candidates}});
    }
    LH_CUDA_CHECK(cudaDeviceSynchronize());
  }
  const double step_tflops = step_flop / (step_ms * 1e-3) / 1e12;
  std::printf("one step's GEMMs (each timed alone): %.1f ms, %.1f TFLOP, %.1f TFLOP/s (%.1f%% of peak); with the "
              "heuristic's first choices %.1f ms\n",
              step_ms, step_flop / 1e12, step_tflops, 100.0 * step_tflops / o.peak_tflops, first_step_ms);
  return {{"device", prop.name}, {"tokens", N}, {"peak_tflops", o.peak_tflops}, {"gemms", rows},
          {"step_ms", step_ms}, {"first_choice_step_ms", first_step_ms}, {"step_flop", step_flop}};
}

}  // namespace lh
