// The CUDA Lighthouse stages (kernels/cuda/lighthouse_*.cu) against the CPU reference: selection
// index rows bitwise equal (the same fp32 scores given to both), bf16 data stages within rel-L2
// 1e-2 of the fp32 reference on bf16-representable inputs, the whole AttentionOp layer on both
// backends, and a 1M-token smoke run (S = 65,536: past any 16-bit grid limit). Skipped without a GPU.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <string>
#include <tuple>
#include <vector>

#include "lighthouse/attention.h"
#include "lighthouse/backend.h"
#include "lighthouse/host_io.h"
#include "lighthouse/ops/lighthouse_reference.h"
#include "lighthouse/rng.h"
#include "support/gpu.h"

namespace {
namespace lhl = lh::lighthouse;
using lh::Buffer;
using lh::DType;
using Vec = std::vector<float>;

// Normal values rounded to bf16: CPU and GPU see identical inputs.
Vec bf16_normal(size_t n, uint64_t seed) {
  lh::Rng rng(seed);
  Vec v(n);
  for (auto& x : v) x = lh::bf16_to_float(lh::float_to_bf16(float(rng.normal())));
  return v;
}
Buffer up(lh::Backend& be, DType t, const Vec& v) {
  Buffer b = be.allocate(t, v.size());
  lh::upload_doubles(be, b.view(), std::vector<double>(v.begin(), v.end()));
  return b;
}
std::vector<int32_t> down_i32(lh::Backend& be, const Buffer& b) {
  std::vector<int32_t> v(b.view().numel);
  be.copy_to_host(v.data(), b.view());
  return v;
}
// Uploads that live as long as the keeper: the ops are asynchronous, so a temporary Buffer freed at
// the end of the call's expression could be released before the kernel reads it.
struct Keep {
  lh::Backend& be;
  std::deque<Buffer> bufs;
  lh::Tensor operator()(DType t, const Vec& v) { return bufs.emplace_back(up(be, t, v)).view(); }
};
Vec down(lh::Backend& be, const Buffer& b) { return lh::download_floats(be, b.view()); }

// ||a - b|| / ||b||, printed so the report can quote it.
double rel_l2(const char* what, const Vec& a, const Vec& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) num += double(a[i] - b[i]) * (a[i] - b[i]), den += double(b[i]) * b[i];
  const double e = a.size() == b.size() ? std::sqrt(num / std::max(den, 1e-300)) : INFINITY;
  std::printf("[gpu-err] lighthouse %-28s %.3g\n", what, e);
  return e;
}

// Level l of a [rows, P, D] pyramid (rows = batches x heads). Each level is checked on its own,
// since level l carries only ~p^-2l of the whole pyramid's norm.
Vec level_of(const Vec& pyr, const lhl::Geometry& g, int l, int D) {
  const size_t P = g.pyramid_size(), rows = pyr.size() / (P * D);
  const size_t begin = size_t(g.offset(l)) * D, end = size_t(g.offset(l) + g.level_size(l)) * D;
  Vec out;
  for (size_t r = 0; r < rows; ++r) out.insert(out.end(), pyr.begin() + r * P * D + begin, pyr.begin() + r * P * D + end);
  return out;
}

lhl::Geometry geo(int N, int L, int p, int k) {
  lhl::Geometry g{N, L, p, k};
  g.validate();
  return g;
}
}  // namespace

TEST_CASE("cuda lighthouse: pyramid, scores, gather and scatter match the CPU reference", "[gpu][lighthouse]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  Keep keep{*gpu, {}};
  const int B = 2, H = 4, Hkv = 2, D = 64;
  // N = 2054 is not a multiple of the token-major kernels' tile (16) or token batch (4). The scatter
  // forward has kernels unrolled for depths 2..4 and a generic one for other depths (L9).
  for (const lhl::Geometry& g : {geo(2048, 3, 2, 256), geo(2054, 2, 2, 128), geo(8192, 4, 4, 128),
                                 geo(32768, 9, 2, 128)}) {
    INFO("N " << g.N << ", L " << g.L << ", p " << g.p << ", k " << g.k);
    const size_t P = g.pyramid_size(), S = g.sub_len(), qkv_n = size_t(B) * g.N * (H + 2 * Hkv) * D;
    const Vec qkv = bf16_normal(qkv_n, 1);
    Vec qp(size_t(B) * H * P * D), kp(size_t(B) * Hkv * P * D), vp(kp.size());
    lhl::pyramid_forward(qp.data(), kp.data(), vp.data(), qkv.data(), B, H, Hkv, D, g);
    Buffer gqkv = up(*gpu, DType::BF16, qkv), gqp = gpu->allocate(DType::BF16, qp.size()),
           gkp = gpu->allocate(DType::BF16, kp.size()), gvp = gpu->allocate(DType::BF16, vp.size());
    gpu->lighthouse_pyramid_forward(gqp.view(), gkp.view(), gvp.view(), gqkv.view(), B, H, Hkv, D, g);
    const Vec got_q = down(*gpu, gqp), got_k = down(*gpu, gkp), got_v = down(*gpu, gvp);
    for (int l = 0; l < g.L; ++l) {
      CAPTURE(l);
      const std::string at = " level " + std::to_string(l);
      CHECK(rel_l2(("pyramid q" + at).c_str(), level_of(got_q, g, l, D), level_of(qp, g, l, D)) < 1e-2);
      CHECK(rel_l2(("pyramid k" + at).c_str(), level_of(got_k, g, l, D), level_of(kp, g, l, D)) < 1e-2);
      CHECK(rel_l2(("pyramid v" + at).c_str(), level_of(got_v, g, l, D), level_of(vp, g, l, D)) < 1e-2);
    }

    // Level 0 of both pyramids holds the same bf16 values, and both sum the squares in the same
    // order: the scores must agree to the bit.
    Vec sq(size_t(B) * H * P), sk(size_t(B) * Hkv * P);
    lhl::norm_scores(sq.data(), qp.data(), B, H, D, g);
    lhl::norm_scores(sk.data(), kp.data(), B, Hkv, D, g);
    Buffer gsq = gpu->allocate(DType::F32, sq.size()), gsk = gpu->allocate(DType::F32, sk.size());
    gpu->lighthouse_norm_scores(gsq.view(), gqp.view(), B, H, D, g);
    gpu->lighthouse_norm_scores(gsk.view(), gkp.view(), B, Hkv, D, g);
    CHECK(down(*gpu, gsq) == sq);
    CHECK(down(*gpu, gsk) == sk);

    std::vector<int32_t> idx(size_t(B) * H * S);
    lhl::select(idx.data(), sq.data(), sk.data(), B, H, Hkv, g);
    Buffer gidx = gpu->allocate(DType::I32, idx.size());
    gpu->lighthouse_select(gidx.view(), keep(DType::F32, sq), keep(DType::F32, sk), B, H, Hkv, g);
    CHECK(down_i32(*gpu, gidx) == idx);

    const size_t sub = size_t(B) * H * S * D;
    for (int x : {H, Hkv}) {  // query pyramid (no groups) and a KV pyramid (2 heads per group)
      const Vec& pyr = x == H ? qp : kp;
      const Buffer& gpyr = x == H ? gqp : gkp;
      Vec ref(sub), dsub = bf16_normal(sub, 2 + x), dref(pyr.size());
      lhl::gather_forward(ref.data(), pyr.data(), idx.data(), B, H, x, D, g);
      lhl::gather_backward(dref.data(), dsub.data(), idx.data(), B, H, x, D, g);
      Buffer out = gpu->allocate(DType::BF16, sub), dpyr = gpu->allocate(DType::BF16, pyr.size());
      gpu->lighthouse_gather_forward(out.view(), gpyr.view(), gidx.view(), B, H, x, D, g);
      gpu->lighthouse_gather_backward(dpyr.view(), keep(DType::BF16, dsub), gidx.view(), B, H, x, D, g);
      CHECK(rel_l2(x == H ? "gather q" : "gather k (GQA)", down(*gpu, out), ref) < 1e-2);
      CHECK(rel_l2(x == H ? "gather backward q" : "gather backward k (GQA)", down(*gpu, dpyr), dref) < 1e-2);
    }

    const size_t out_n = size_t(B) * g.N * H * D;
    const Vec o = bf16_normal(sub, 7), dout = bf16_normal(out_n, 8);
    Vec out(out_n), dsub(sub);
    lhl::scatter_forward(out.data(), o.data(), idx.data(), B, H, D, g);
    lhl::scatter_backward(dsub.data(), dout.data(), idx.data(), B, H, D, g);
    Buffer gout = gpu->allocate(DType::BF16, out_n), gdsub = gpu->allocate(DType::BF16, sub);
    gpu->lighthouse_scatter_forward(gout.view(), keep(DType::BF16, o), gidx.view(), B, H, D, g);
    gpu->lighthouse_scatter_backward(gdsub.view(), keep(DType::BF16, dout), gidx.view(), B, H, D, g);
    // The scatter forward adds the same bf16 values in the same (level) order in fp32 as the
    // reference and rounds once: its bits are the reference's, rounded to bf16.
    Vec out_bf16(out.size());
    for (size_t i = 0; i < out.size(); ++i) out_bf16[i] = lh::bf16_to_float(lh::float_to_bf16(out[i]));
    CHECK(down(*gpu, gout) == out_bf16);
    CHECK(rel_l2("scatter backward", down(*gpu, gdsub), dsub) < 1e-2);

    const Vec dqp = bf16_normal(qp.size(), 9), dkp = bf16_normal(kp.size(), 10), dvp = bf16_normal(vp.size(), 11);
    Buffer gdqkv = gpu->allocate(DType::BF16, qkv_n);
    // All levels at once, then each level's gradient alone (the others zero): a deep level's share
    // of the whole is too small to show an error in it.
    for (int only = -1; only < g.L; ++only) {
      CAPTURE(only);
      Vec q = dqp, k = dkp, v = dvp, dqkv(qkv_n);
      if (only >= 0)
        for (Vec* d : {&q, &k, &v}) {
          const Vec kept = level_of(*d, g, only, D);
          std::fill(d->begin(), d->end(), 0.0);
          const size_t P = g.pyramid_size(), rows = d->size() / (P * D);
          for (size_t r = 0; r < rows; ++r)
            std::copy(kept.begin() + r * g.level_size(only) * D, kept.begin() + (r + 1) * g.level_size(only) * D,
                      d->begin() + (r * P + g.offset(only)) * D);
        }
      lhl::pyramid_backward(dqkv.data(), q.data(), k.data(), v.data(), B, H, Hkv, D, g);
      gpu->lighthouse_pyramid_backward(gdqkv.view(), keep(DType::BF16, q), keep(DType::BF16, k), keep(DType::BF16, v), B,
                                       H, Hkv, D, g);
      const std::string what = only < 0 ? "pyramid backward" : "pyramid backward level " + std::to_string(only);
      CHECK(rel_l2(what.c_str(), down(*gpu, gdqkv), dqkv) < 1e-2);
    }
  }
}

TEST_CASE("cuda lighthouse: the fused composites give the bits of the stage sequence", "[gpu][lighthouse]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  Keep keep{*gpu, {}};
  // L3 p2 and L4 p4 take the one-pass coarse pyramid, which also writes the norm scores when a
  // head's D / 8 chunk lanes are a power of two up to 16 (D = 64, 128; not 96 or 256, which take
  // separate scores); L9 p2 is deeper than it supports and falls back to the per-entry kernel. L4 p4
  // windows span several rounds of parked rows (64 rows, 16 lanes). N = 2054 leaves partial token
  // tiles and batches in the backward. GQA, 2 query heads per kv head. At D = 184 the separate
  // scores' dynamic shared memory is exactly 48 KiB, and their static row table comes on top.
  const std::pair<lhl::Geometry, int> cases[] = {{geo(2048, 3, 2, 256), 64},  {geo(2048, 3, 2, 256), 128},
                                                 {geo(8192, 4, 4, 128), 128}, {geo(8192, 4, 4, 128), 256},
                                                 {geo(2048, 3, 2, 256), 96},  {geo(32768, 9, 2, 128), 64},
                                                 {geo(2054, 2, 2, 128), 64},  {geo(2048, 3, 2, 256), 184}};
  for (const auto& [g, D] : cases) {
    INFO("N " << g.N << ", L " << g.L << ", p " << g.p << ", k " << g.k << ", D " << D);
    const int B = 2, H = 4, Hkv = 2;
    const size_t P = g.pyramid_size(), S = g.sub_len(), qkv_n = size_t(B) * g.N * (H + 2 * Hkv) * D;
    const size_t sub = size_t(B) * H * S * D, qpyr = size_t(B) * H * P * D, kvpyr = size_t(B) * Hkv * P * D;
    const lh::Tensor qkv = keep(DType::BF16, bf16_normal(qkv_n, 21));
    // Two sets of outputs and scratch: [0] from the fused override, [1] from the base class's
    // stage sequence run on the same backend.
    struct Run {
      Buffer q, k, v, idx, qp, kp, vp, sq, sk, dqkv;
    };
    Run run[2];
    for (Run& r : run)
      r = {gpu->allocate(DType::BF16, sub), gpu->allocate(DType::BF16, sub), gpu->allocate(DType::BF16, sub),
           gpu->allocate(DType::I32, size_t(B) * H * S), gpu->allocate(DType::BF16, qpyr),
           gpu->allocate(DType::BF16, kvpyr), gpu->allocate(DType::BF16, kvpyr),
           gpu->allocate(DType::F32, size_t(B) * H * P), gpu->allocate(DType::F32, size_t(B) * Hkv * P),
           gpu->allocate(DType::BF16, qkv_n)};
    auto views = [](Run& r) { return std::make_tuple(r.q.view(), r.k.view(), r.v.view(), r.idx.view()); };
    auto [q0, k0, v0, i0] = views(run[0]);
    auto [q1, k1, v1, i1] = views(run[1]);
    gpu->lighthouse_select_gather(q0, k0, v0, i0, qkv, run[0].qp.view(), run[0].kp.view(), run[0].vp.view(),
                                  run[0].sq.view(), run[0].sk.view(), B, H, Hkv, D, g);
    gpu->lh::Backend::lighthouse_select_gather(q1, k1, v1, i1, qkv, run[1].qp.view(), run[1].kp.view(),
                                               run[1].vp.view(), run[1].sq.view(), run[1].sk.view(), B, H, Hkv, D, g);
    CHECK(down_i32(*gpu, run[0].idx) == down_i32(*gpu, run[1].idx));
    CHECK(down(*gpu, run[0].sq) == down(*gpu, run[1].sq));
    CHECK(down(*gpu, run[0].sk) == down(*gpu, run[1].sk));
    CHECK(down(*gpu, run[0].q) == down(*gpu, run[1].q));
    CHECK(down(*gpu, run[0].k) == down(*gpu, run[1].k));
    CHECK(down(*gpu, run[0].v) == down(*gpu, run[1].v));

    const lh::Tensor dq = keep(DType::BF16, bf16_normal(sub, 22)), dk = keep(DType::BF16, bf16_normal(sub, 23)),
                     dv = keep(DType::BF16, bf16_normal(sub, 24));
    gpu->lighthouse_gather_pyramid_backward(run[0].dqkv.view(), dq, dk, dv, i0, run[0].qp.view(), run[0].kp.view(),
                                            run[0].vp.view(), B, H, Hkv, D, g);
    gpu->lh::Backend::lighthouse_gather_pyramid_backward(run[1].dqkv.view(), dq, dk, dv, i1, run[1].qp.view(),
                                                         run[1].kp.view(), run[1].vp.view(), B, H, Hkv, D, g);
    const Vec fused = down(*gpu, run[0].dqkv), staged = down(*gpu, run[1].dqkv);
    CHECK(fused == staged);
    double norm = 0;
    for (float x : fused) norm += double(x) * x;
    CHECK(norm > 0);  // the comparison is not between two zero buffers
  }
}

TEST_CASE("cuda lighthouse: selection equals the CPU reference index for index", "[gpu][lighthouse]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  Keep keep{*gpu, {}};
  struct Case {
    int B, H, Hkv, N, L, p, k;
  };
  // Shared-memory sorts (small, and > 48 KiB with the opt-in), the global-memory fallback
  // (C = 32,768 coarsest entries per tile), L = 4, p = 4 and 8, GQA.
  const Case cases[] = {{2, 4, 2, 2048, 3, 2, 256}, {1, 2, 1, 65536, 4, 4, 512}, {1, 1, 1, 8192, 2, 2, 128},
                        {1, 2, 2, 65536, 2, 2, 128}, {1, 3, 1, 32768, 3, 8, 256}};
  for (const Case& c : cases) {
    const lhl::Geometry g = geo(c.N, c.L, c.p, c.k);
    const size_t P = g.pyramid_size();
    // Scores on a coarse grid of 24 values (zeros of both signs among them): most comparisons are
    // ties, so the tie rule (higher score, then lower index) decides much of every row.
    lh::Rng rng(uint64_t(c.N) * 31 + c.L);
    auto draw = [&](size_t n) {
      Vec v(n);
      for (auto& x : v) x = float(int(rng.uniform() * 24) - 2) / 8.0f;
      for (size_t i = 0; i < n; i += 97) v[i] = -0.0f;
      return v;
    };
    const Vec sq = draw(size_t(c.B) * c.H * P), sk = draw(size_t(c.B) * c.Hkv * P);
    std::vector<int32_t> idx(size_t(c.B) * c.H * g.sub_len());
    lhl::select(idx.data(), sq.data(), sk.data(), c.B, c.H, c.Hkv, g);
    Buffer gidx = gpu->allocate(DType::I32, idx.size());
    gpu->lighthouse_select(gidx.view(), keep(DType::F32, sq), keep(DType::F32, sk), c.B, c.H,
                           c.Hkv, g);
    INFO("N=" << c.N << " L=" << c.L << " p=" << c.p << " k=" << c.k);
    CHECK(down_i32(*gpu, gidx) == idx);
  }
}

TEST_CASE("cuda lighthouse: inner attention matches the CPU sdpa", "[gpu][lighthouse]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  Keep keep{*gpu, {}};
  const int BH = 4, S = 768, D = 64;
  const size_t n = size_t(BH) * S * D;
  const Vec q = bf16_normal(n, 21), k = bf16_normal(n, 22), v = bf16_normal(n, 23), dout = bf16_normal(n, 24);
  Vec o(n), lse(size_t(BH) * S), dq(n), dk(n), dv(n);
  lhl::sdpa_forward(o.data(), lse.data(), q.data(), k.data(), v.data(), BH, S, D);
  lhl::sdpa_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), o.data(), lse.data(),
                     BH, S, D);
  Buffer gq = up(*gpu, DType::BF16, q), gk = up(*gpu, DType::BF16, k), gv = up(*gpu, DType::BF16, v);
  Buffer go = gpu->allocate(DType::BF16, n), glse = gpu->allocate(DType::F32, lse.size());
  Buffer gdq = gpu->allocate(DType::BF16, n), gdk = gpu->allocate(DType::BF16, n), gdv = gpu->allocate(DType::BF16, n);
  gpu->lighthouse_sdpa_forward(go.view(), glse.view(), gq.view(), gk.view(), gv.view(), BH, S, D);
  gpu->lighthouse_sdpa_backward(gdq.view(), gdk.view(), gdv.view(), keep(DType::BF16, dout), gq.view(),
                                gk.view(), gv.view(), go.view(), glse.view(), BH, S, D);
  CHECK(rel_l2("sdpa o", down(*gpu, go), o) < 1e-2);
  CHECK(rel_l2("sdpa lse", down(*gpu, glse), lse) < 1e-4);
  CHECK(rel_l2("sdpa dq", down(*gpu, gdq), dq) < 2e-2);
  CHECK(rel_l2("sdpa dk", down(*gpu, gdk), dk) < 2e-2);
  CHECK(rel_l2("sdpa dv", down(*gpu, gdv), dv) < 2e-2);
}

TEST_CASE("cuda lighthouse: the whole AttentionOp layer matches the CPU backend, GQA", "[gpu][lighthouse]") {
  LH_SKIP_WITHOUT_GPU();
  // L=3 p=2 k=128: one tile of 512 coarsest entries, S = 1024; two sequences, so that every stage's
  // per-sequence offsets are used.
  const lh::AttentionShape s{2, 2048, 4, 2, 64};
  lh::AttentionPhase phase{1, "lighthouse", {{"levels", 3}, {"pooling", 2}, {"topk", 128}}};
  lh::ModelConfig model;
  model.n_heads = s.H, model.n_kv_heads = s.Hkv, model.dim = s.H * s.D, model.n_layers = 1;
  const size_t qkv_n = s.tokens() * (s.H + 2 * s.Hkv) * s.D, out_n = s.tokens() * s.H * s.D;
  const Vec qkv = bf16_normal(qkv_n, 31), dout = bf16_normal(out_n, 32);
  auto run = [&](lh::Backend& be, Vec& out, Vec& dqkv) {
    auto op = lh::make_attention(phase, model);
    op->reserve(be, 1, s);
    Buffer gqkv = up(be, be.act_dtype(), qkv), gdout = up(be, be.act_dtype(), dout);
    Buffer gout = be.allocate(be.act_dtype(), out_n), gdqkv = be.allocate(be.act_dtype(), qkv_n);
    op->forward(be, 0, gout.view(), gqkv.view(), s);
    op->backward(be, 0, gdqkv.view(), gdout.view(), gqkv.view(), gout.view(), s);
    out = down(be, gout), dqkv = down(be, gdqkv);
  };
  auto cpu = lh::make_cpu_backend(DType::F32);
  auto gpu = lh::make_cuda_backend();
  Vec out_c, dqkv_c, out_g, dqkv_g, out_g2, dqkv_g2;
  run(*cpu, out_c, dqkv_c);
  run(*gpu, out_g, dqkv_g);
  run(*gpu, out_g2, dqkv_g2);
  CHECK(rel_l2("layer out", out_g, out_c) < 2e-2);
  CHECK(rel_l2("layer dqkv", dqkv_g, dqkv_c) < 3e-2);
  // dQ, dK and dV of each sequence on their own.
  const size_t W = size_t(s.H + 2 * s.Hkv) * s.D, bounds[4] = {0, size_t(s.H) * s.D, size_t(s.H + s.Hkv) * s.D, W};
  const char* names[3][2] = {{"layer dq seq 0", "layer dq seq 1"}, {"layer dk seq 0", "layer dk seq 1"},
                             {"layer dv seq 0", "layer dv seq 1"}};
  for (int b = 0; b < s.B; ++b)
    for (int part = 0; part < 3; ++part) {
      Vec got, want;
      for (size_t t = size_t(b) * s.T; t < size_t(b + 1) * s.T; ++t) {
        got.insert(got.end(), dqkv_g.begin() + t * W + bounds[part], dqkv_g.begin() + t * W + bounds[part + 1]);
        want.insert(want.end(), dqkv_c.begin() + t * W + bounds[part], dqkv_c.begin() + t * W + bounds[part + 1]);
      }
      CHECK(rel_l2(names[part][b], got, want) < 3e-2);
    }
  CHECK(out_g2 == out_g);  // bit-reproducible: no atomics, deterministic cuDNN backward
  CHECK(dqkv_g2 == dqkv_g);
}

TEST_CASE("cuda lighthouse: 1M tokens, L=4 p=4 k=4096 (S = 65536) run, one head selects as the CPU",
          "[gpu][lighthouse]") {
  LH_SKIP_WITHOUT_GPU();
  auto gpu = lh::make_cuda_backend();
  const int B = 1, H = 2, Hkv = 1, D = 128, HX = H + 2 * Hkv;
  const lhl::Geometry g = geo(1 << 20, 4, 4, 4096);
  const size_t P = g.pyramid_size(), S = g.sub_len(), N = g.N, qkv_n = N * HX * D, sub = size_t(H) * S * D;
  REQUIRE(S == 65536);
  // bf16 bits straight from a xorshift (N (H + 2 Hkv) D = 537M values: the Rng is too slow here),
  // kept in [-2, 2) so norms stay finite and distinct.
  std::vector<uint16_t> bits(qkv_n);
  uint64_t st = 0x9E3779B97F4A7C15ull;
  for (auto& b : bits) {
    st ^= st << 13, st ^= st >> 7, st ^= st << 17;
    b = lh::float_to_bf16(float(int64_t(st >> 40) - (1 << 23)) / float(1 << 22));
  }
  auto alloc = [&](DType t, size_t n) { return gpu->allocate(t, n); };
  Buffer qkv = alloc(DType::BF16, qkv_n), qp = alloc(DType::BF16, H * P * D), kp = alloc(DType::BF16, P * D),
         vp = alloc(DType::BF16, P * D), sq = alloc(DType::F32, H * P), sk = alloc(DType::F32, P),
         idx = alloc(DType::I32, H * S), q = alloc(DType::BF16, sub), k = alloc(DType::BF16, sub),
         v = alloc(DType::BF16, sub), o = alloc(DType::BF16, sub), lse = alloc(DType::F32, H * S),
         out = alloc(DType::BF16, N * H * D);
  gpu->copy_from_host(qkv.view(), bits.data());
  // Head 0 on the CPU: scores from the same bf16 inputs (level 0 is all norm_scores reads), then
  // the reference cascade, against the GPU's row.
  Vec lvl0(N * D), csq(P), csk(P);
  for (int part : {0, H}) {  // query head 0, then key head 0 (group of head 0)
    for (size_t t = 0; t < N; ++t)
      for (int d = 0; d < D; ++d) lvl0[t * D + d] = lh::bf16_to_float(bits[(t * HX + part) * D + d]);
    lhl::norm_scores(part == 0 ? csq.data() : csk.data(), lvl0.data(), 1, 1, D, g);
  }
  gpu->lighthouse_pyramid_forward(qp.view(), kp.view(), vp.view(), qkv.view(), B, H, Hkv, D, g);
  gpu->lighthouse_norm_scores(sq.view(), qp.view(), B, H, D, g);
  gpu->lighthouse_norm_scores(sk.view(), kp.view(), B, Hkv, D, g);
  gpu->lighthouse_select(idx.view(), sq.view(), sk.view(), B, H, Hkv, g);
  gpu->lighthouse_gather_forward(q.view(), qp.view(), idx.view(), B, H, H, D, g);
  gpu->lighthouse_gather_forward(k.view(), kp.view(), idx.view(), B, H, Hkv, D, g);
  gpu->lighthouse_gather_forward(v.view(), vp.view(), idx.view(), B, H, Hkv, D, g);
  gpu->lighthouse_sdpa_forward(o.view(), lse.view(), q.view(), k.view(), v.view(), B * H, int(S), D);
  gpu->lighthouse_scatter_forward(out.view(), o.view(), idx.view(), B, H, D, g);
  // Backward with dout = out and the pyramids reused as their gradients (the values do not
  // matter here, finiteness does).
  Buffer dO = alloc(DType::BF16, sub), dq = alloc(DType::BF16, sub), dk = alloc(DType::BF16, sub),
         dv = alloc(DType::BF16, sub);
  gpu->lighthouse_scatter_backward(dO.view(), out.view(), idx.view(), B, H, D, g);
  gpu->lighthouse_sdpa_backward(dq.view(), dk.view(), dv.view(), dO.view(), q.view(), k.view(), v.view(), o.view(),
                                lse.view(), B * H, int(S), D);
  gpu->lighthouse_gather_backward(qp.view(), dq.view(), idx.view(), B, H, H, D, g);
  gpu->lighthouse_gather_backward(kp.view(), dk.view(), idx.view(), B, H, Hkv, D, g);
  gpu->lighthouse_gather_backward(vp.view(), dv.view(), idx.view(), B, H, Hkv, D, g);
  gpu->lighthouse_pyramid_backward(qkv.view(), qp.view(), kp.view(), vp.view(), B, H, Hkv, D, g);
  gpu->copy_to_host(bits.data(), qkv.view());
  size_t bad = 0;
  for (uint16_t b : bits) bad += (b & 0x7F80u) == 0x7F80u;  // Inf or NaN
  CHECK(bad == 0);

  std::vector<int32_t> ref(S);
  lhl::select(ref.data(), csq.data(), csk.data(), 1, 1, 1, g);
  const std::vector<int32_t> got = down_i32(*gpu, idx);
  CHECK(std::vector<int32_t>(got.begin(), got.begin() + S) == ref);
}
