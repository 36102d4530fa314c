// `lighthouse bench lighthouse`: one Lighthouse attention layer, forward + backward, per sequence
// length, against dense causal attention at the same N. Two views of the same work:
//   - the AttentionOp end to end (what training runs; no synchronisation inside), and
//   - each Backend call on its own, synchronised before and after, so the per-stage breakdown
//     names where the time goes (the sum exceeds the end-to-end time by the launch gaps), with the
//     compulsory bytes of the memory-bound stages and the bandwidth they reach; and the unfused
//     stage ops that the fused composites replace.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>

#include "bench/timing.h"
#include "lighthouse/attention.h"
#include "lighthouse/bench.h"
#include "lighthouse/host_io.h"
#include "lighthouse/rng.h"

namespace lh {
namespace {
// Uniform(-1, 1) activations; bf16 bits come straight from a xorshift (hundreds of millions of
// values at 128K tokens: a double round trip per value would dominate the benchmark's run time).
Buffer random_act(Backend& be, size_t n, uint64_t seed) {
  Buffer b = be.allocate(be.act_dtype(), n);
  if (be.act_dtype() == DType::BF16) {
    std::vector<uint16_t> h(n);
    uint64_t st = 0x9E3779B97F4A7C15ull * (seed + 1);
    for (auto& x : h) {
      st ^= st << 13, st ^= st >> 7, st ^= st << 17;
      x = float_to_bf16(float(int64_t(st >> 40) - (1 << 23)) / float(1 << 23));
    }
    be.copy_from_host(b.view(), h.data());
    return b;
  }
  Rng rng(seed);
  std::vector<double> h(n);
  for (auto& x : h) x = 2.0 * rng.uniform() - 1.0;
  upload_doubles(be, b.view(), h);
  return b;
}

// The requested geometry, or the largest smaller k (multiple of 128) that is valid at this N
// (k = 1536 needs N / p^(L-1) divisible by 12; the paper uses k = 1024 / 2048 elsewhere).
lighthouse::Geometry pick_geometry(int N, const LighthouseBenchOptions& o) {
  for (int k = o.topk; k >= lighthouse::kTileSlots; k -= lighthouse::kTileSlots) {
    const lighthouse::Geometry g{N, o.levels, o.pooling, k};
    if (g.problem().empty()) return g;
  }
  return {N, o.levels, o.pooling, 0};
}
}  // namespace

nlohmann::json bench_lighthouse(Backend& be, const LighthouseBenchOptions& o) {
  check_heads(o.heads, o.kv_heads);
  be.set_deterministic(o.deterministic);
  nlohmann::json rows = nlohmann::json::array();
  for (int N : o.seq_lens) {
    const lighthouse::Geometry g = pick_geometry(N, o);
    if (g.k == 0) {
      std::printf("lighthouse N=%d: no valid k <= %d for L=%d p=%d, skipped\n", N, o.topk, o.levels, o.pooling);
      continue;
    }
    const int B = o.batch, H = o.heads, Hkv = o.kv_heads, D = o.head_dim;
    const size_t P = g.pyramid_size(), S = g.sub_len();
    const size_t n_qkv = size_t(B) * N * (H + 2 * Hkv) * D, n_out = size_t(B) * N * H * D, n_sub = size_t(B) * H * S * D;
    const DType act = be.act_dtype();
    Buffer qkv = random_act(be, n_qkv, 1), dout = random_act(be, n_out, 2);
    auto A = [&](DType t, size_t n) { return be.allocate(t, n); };
    Buffer out = A(act, n_out), dqkv = A(act, n_qkv), qp = A(act, size_t(B) * H * P * D),
           kp = A(act, size_t(B) * Hkv * P * D), vp = A(act, size_t(B) * Hkv * P * D),
           sq = A(DType::F32, size_t(B) * H * P), sk = A(DType::F32, size_t(B) * Hkv * P),
           idx = A(DType::I32, size_t(B) * H * S), lse = A(be.param_dtype(), size_t(B) * H * S);
    Buffer q = A(act, n_sub), k = A(act, n_sub), v = A(act, n_sub), o_ = A(act, n_sub), dO = A(act, n_sub),
           dq = A(act, n_sub), dk = A(act, n_sub), dv = A(act, n_sub), dqp = A(act, size_t(B) * H * P * D),
           dkp = A(act, size_t(B) * Hkv * P * D), dvp = A(act, size_t(B) * Hkv * P * D);
    const int BH = B * H;
    // Compulsory bytes per stage (each tensor read or written once; 0 = compute-bound, not
    // estimated): what "achieved bandwidth" divides by. e = bytes per act element.
    const double e = double(dtype_size(act)), coarse = double(P - size_t(N)) * B * (H + 2 * Hkv) * D * e;
    const double base_qk = double(B) * N * (H + Hkv) * D * e, idx_b = double(B) * H * S * 4.0;
    struct Stage {
      std::string name;
      std::function<void()> fn;
      double bytes;
    };
    // The layer's sequence (src/model/lighthouse_attention.cpp): fused composites around cuDNN.
    const std::vector<Stage> stages = {
        {"fwd select+gather (fused)",
         [&] {
           be.lighthouse_select_gather(q.view(), k.view(), v.view(), idx.view(), qkv.view(), qp.view(), kp.view(),
                                       vp.view(), sq.view(), sk.view(), B, H, Hkv, D, g);
         },
         // qkv once (coarse pyramid), q/k rows again (scores), coarse levels written, gathers
         n_qkv * e + base_qk + coarse + 3 * n_sub * e + idx_b},
        {"fwd inner sdpa",
         [&] { be.lighthouse_sdpa_forward(o_.view(), lse.view(), q.view(), k.view(), v.view(), BH, int(S), D); }, 0},
        {"fwd scatter", [&] { be.lighthouse_scatter_forward(out.view(), o_.view(), idx.view(), B, H, D, g); },
         n_sub * e + n_out * e + idx_b},
        {"bwd scatter", [&] { be.lighthouse_scatter_backward(dO.view(), dout.view(), idx.view(), B, H, D, g); },
         n_out * e + n_sub * e + idx_b},
        {"bwd inner sdpa",
         [&] {
           be.lighthouse_sdpa_backward(dq.view(), dk.view(), dv.view(), dO.view(), q.view(), k.view(), v.view(),
                                       o_.view(), lse.view(), BH, int(S), D);
         },
         0},
        {"bwd gather+pyramid (fused)",
         [&] {
           be.lighthouse_gather_pyramid_backward(dqkv.view(), dq.view(), dk.view(), dv.view(), idx.view(), dqp.view(),
                                                 dkp.view(), dvp.view(), B, H, Hkv, D, g);
         },
         // dq/dk/dv read, dqkv written; for depths above 4 (no pulled kernel) the coarse
         // gradients are written and read as well. Counted as the CUDA backend moves them.
         3 * n_sub * e + (g.L <= 4 ? 0.0 : 2 * coarse) + n_qkv * e + idx_b},
    };
    // The unfused stage ops (the reference sequence the composites replace), for comparison.
    const std::vector<Stage> reference_stages = {
        {"  pyramid (all levels)",
         [&] { be.lighthouse_pyramid_forward(qp.view(), kp.view(), vp.view(), qkv.view(), B, H, Hkv, D, g); },
         n_qkv * e * g.L + double(B) * P * (H + 2 * Hkv) * D * e},
        {"  norm scores",
         [&] {
           be.lighthouse_norm_scores(sq.view(), qp.view(), B, H, D, g);
           be.lighthouse_norm_scores(sk.view(), kp.view(), B, Hkv, D, g);
         },
         base_qk},
        {"  select", [&] { be.lighthouse_select(idx.view(), sq.view(), sk.view(), B, H, Hkv, g); }, 0},
        {"  gather x3",
         [&] {
           be.lighthouse_gather_forward(q.view(), qp.view(), idx.view(), B, H, H, D, g);
           be.lighthouse_gather_forward(k.view(), kp.view(), idx.view(), B, H, Hkv, D, g);
           be.lighthouse_gather_forward(v.view(), vp.view(), idx.view(), B, H, Hkv, D, g);
         },
         6 * n_sub * e + idx_b},
        {"  gather backward x3",
         [&] {
           be.lighthouse_gather_backward(dqp.view(), dq.view(), idx.view(), B, H, H, D, g);
           be.lighthouse_gather_backward(dkp.view(), dk.view(), idx.view(), B, H, Hkv, D, g);
           be.lighthouse_gather_backward(dvp.view(), dv.view(), idx.view(), B, H, Hkv, D, g);
         },
         3 * n_sub * e + double(B) * P * (H + 2 * Hkv) * D * e},
        {"  pyramid backward",
         [&] { be.lighthouse_pyramid_backward(dqkv.view(), dqp.view(), dkp.view(), dvp.view(), B, H, Hkv, D, g); },
         double(B) * P * (H + 2 * Hkv) * D * e + n_qkv * e},
    };
    std::map<std::string, std::vector<double>> times;
    for (int it = 0; it < o.warmup + o.iters; ++it)
      for (const auto* list : {&stages, &reference_stages})
        for (const Stage& st : *list) {
          be.synchronize();
          const auto t0 = std::chrono::steady_clock::now();
          st.fn();
          be.synchronize();
          if (it >= o.warmup)
            times[st.name].push_back(
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }

    // End to end through the AttentionOp, and dense causal attention at the same N.
    AttentionPhase phase{1, "lighthouse", {{"levels", g.L}, {"pooling", g.p}, {"topk", g.k}}};
    ModelConfig model;
    model.n_heads = H, model.n_kv_heads = Hkv, model.dim = H * D, model.n_layers = 1;
    const AttentionShape shape{B, N, H, Hkv, D};
    auto op = make_attention(phase, model);
    op->reserve(be, 1, shape);
    const double lh_ms = median_ms(be, o.warmup, o.iters, [&] {
      op->forward(be, 0, out.view(), qkv.view(), shape);
      op->backward(be, 0, dqkv.view(), dout.view(), qkv.view(), out.view(), shape);
    });
    op.reset();
    double dense_ms = NAN;  // not timed above max_dense_len
    if (N <= o.max_dense_len) {
      Buffer dlse = A(be.param_dtype(), size_t(B) * H * N);
      dense_ms = median_ms(be, o.warmup, o.iters, [&] {
        be.attention_forward(out.view(), dlse.view(), qkv.view(), B, N, H, Hkv, D);
        be.attention_backward(dqkv.view(), dout.view(), qkv.view(), out.view(), dlse.view(), B, N, H, Hkv, D);
      });
    }

    nlohmann::json r = {{"seq_len", N}, {"levels", g.L}, {"pooling", g.p}, {"topk", g.k}, {"sub_len", S},
                        {"batch", B}, {"heads", H}, {"kv_heads", Hkv}, {"head_dim", D}, {"deterministic", o.deterministic},
                        {"lighthouse_fwd_bwd_ms", lh_ms}};
    if (!std::isnan(dense_ms)) r["dense_fwd_bwd_ms"] = dense_ms;
    std::printf("lighthouse N=%7d L=%d p=%d k=%5d S=%6zu  fwd+bwd %8.3f ms", N, g.L, g.p, g.k, S, lh_ms);
    if (std::isnan(dense_ms)) std::printf("  dense not timed (N > --max-dense-len)\n");
    else std::printf("  dense %9.3f ms  (%.2fx)\n", dense_ms, dense_ms / lh_ms);
    auto report = [&](const std::vector<Stage>& list, const char* key) {
      double sum = 0;
      for (const Stage& st : list) {
        std::vector<double>& t = times[st.name];
        std::sort(t.begin(), t.end());
        const double ms = t[t.size() / 2];
        sum += ms;
        r[key][st.name] = ms;
        if (st.bytes > 0)
          std::printf("    %-30s %8.3f ms  %7.1f MB  %6.0f GB/s\n", st.name.c_str(), ms, st.bytes / 1e6,
                      st.bytes / (ms * 1e-3) / 1e9);
        else
          std::printf("    %-30s %8.3f ms\n", st.name.c_str(), ms);
      }
      return sum;
    };
    const double sum = report(stages, "stages_ms");
    std::printf("    %-30s %8.3f ms\n", "sum of synchronised stages", sum);
    std::printf("    unfused stage ops (reference sequence):\n");
    report(reference_stages, "reference_stages_ms");
    std::fflush(stdout);
    rows.push_back(r);
  }
  if (rows.empty())
    throw std::runtime_error("bench lighthouse: no --seq-lens value has a valid geometry for --levels " +
                             std::to_string(o.levels) + " --pooling " + std::to_string(o.pooling) + " --topk " +
                             std::to_string(o.topk));
  return {{"benchmark", "lighthouse"}, {"backend", be.name()}, {"results", rows}};
}

}  // namespace lh
