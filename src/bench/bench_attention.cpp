#include <cstdio>
#include <stdexcept>

#include "bench/timing.h"
#include "lighthouse/bench.h"
#include "lighthouse/host_io.h"
#include "lighthouse/rng.h"

namespace lh {
namespace {
// Uniform(-1, 1) values in the backend's activation dtype, generated straight into that format.
Buffer random_activations(Backend& be, size_t n, uint64_t seed) {
  Buffer b = be.allocate(be.act_dtype(), n);
  Rng rng(seed);
  if (be.act_dtype() == DType::BF16) {
    std::vector<uint16_t> h(n);
    for (auto& x : h) x = float_to_bf16(float(2.0 * rng.uniform() - 1.0));
    be.copy_from_host(b.view(), h.data());
  } else {
    std::vector<double> h(n);
    for (auto& x : h) x = 2.0 * rng.uniform() - 1.0;
    upload_doubles(be, b.view(), h);
  }
  return b;
}
}  // namespace

void check_heads(int heads, int kv_heads) {
  if (heads < 1 || kv_heads < 1 || kv_heads > heads || heads % kv_heads != 0)
    throw std::runtime_error("--kv-heads (" + std::to_string(kv_heads) + ") must divide --heads (" +
                             std::to_string(heads) + ")");
}

nlohmann::json bench_attention(Backend& be, const AttentionBenchOptions& o) {
  check_heads(o.heads, o.kv_heads);
  be.set_deterministic(o.deterministic);
  nlohmann::json rows = nlohmann::json::array();
  for (int N : o.seq_lens) {
    const int B = o.batch, H = o.heads, Hkv = o.kv_heads, D = o.head_dim;
    const size_t n_qkv = size_t(B) * N * (H + 2 * Hkv) * D, n_out = size_t(B) * N * H * D;
    Buffer qkv = random_activations(be, n_qkv, 1), dout = random_activations(be, n_out, 2);
    Buffer out = be.allocate(be.act_dtype(), n_out), dqkv = be.allocate(be.act_dtype(), n_qkv);
    Buffer lse = be.allocate(be.param_dtype(), size_t(B) * H * N);
    auto fwd = [&] { be.attention_forward(out.view(), lse.view(), qkv.view(), B, N, H, Hkv, D); };
    auto bwd = [&] {
      be.attention_backward(dqkv.view(), dout.view(), qkv.view(), out.view(), lse.view(), B, N, H, Hkv, D);
    };
    const double fwd_ms = median_ms(be, o.warmup, o.iters, fwd);
    const double step_ms = median_ms(be, o.warmup, o.iters, [&] { fwd(); bwd(); });
    // The backward alone, on the last forward's output and statistics (fwd+bwd less fwd would mix
    // two medians).
    const double bwd_ms = median_ms(be, o.warmup, o.iters, bwd);
    // Causal: the forward is half of two products of 2 N^2 D flops, the backward 2.5 times that
    // (five products: S again, dP, dV, dK, dQ).
    const double fwd_flops = 2.0 * B * H * double(N) * N * D;
    const double bwd_flops = fwd_flops * 2.5, total_flops = fwd_flops + bwd_flops;
    nlohmann::json r = {{"seq_len", N},
                        {"batch", B},
                        {"heads", H},
                        {"kv_heads", Hkv},
                        {"head_dim", D},
                        {"deterministic", o.deterministic},
                        {"fwd_ms", fwd_ms},
                        {"fwd_bwd_ms", step_ms},
                        {"bwd_ms", bwd_ms},
                        {"fwd_tflops", fwd_flops / fwd_ms * 1e-9},
                        {"fwd_bwd_tflops", total_flops / step_ms * 1e-9},
                        {"bwd_tflops", bwd_flops / bwd_ms * 1e-9}};
    std::printf("attention N=%7d  fwd %9.3f ms (%6.1f TFLOP/s)  fwd+bwd %9.3f ms (%6.1f TFLOP/s)  bwd %9.3f ms "
                "(%6.1f TFLOP/s)\n",
                N, fwd_ms, r["fwd_tflops"].get<double>(), step_ms, r["fwd_bwd_tflops"].get<double>(), bwd_ms,
                r["bwd_tflops"].get<double>());
    std::fflush(stdout);
    rows.push_back(r);
  }
  return {{"benchmark", "attention"}, {"backend", be.name()}, {"results", rows}};
}

}  // namespace lh
