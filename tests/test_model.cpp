// Whole-model checks: the hand-written backward of the full Llama against central finite
// differences of the loss, in double precision, for untied and tied embeddings and GQA.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "lighthouse/backend.h"
#include "lighthouse/model.h"
#include "lighthouse/optimizer.h"
#include "lighthouse/rng.h"

namespace {

lh::ModelConfig tiny_model(bool tied) {
  lh::ModelConfig m;
  m.dim = 8;
  m.n_layers = 2;
  m.n_heads = 2;
  m.n_kv_heads = 1;  // GQA: both query heads share one kv head
  m.ffn_hidden = 12;
  m.vocab_size = 11;
  m.max_seq_len = 8;
  m.tied_embeddings = tied;
  m.init_std = 0.3;  // large weights make every path contribute visibly to the loss
  return m;
}

}  // namespace

TEST_CASE("whole-model gradients match finite differences (fp64)", "[cpu][model]") {
  const bool tied = GENERATE(false, true);
  CAPTURE(tied);
  auto be = lh::make_cpu_backend(lh::DType::F64);
  const lh::ModelConfig cfg = tiny_model(tied);
  lh::LlamaModel model(cfg, *be);
  model.init_weights(7);
  // Norm weights start at exactly 1; perturb them so their gradients are generic.
  lh::Rng rng(11);
  double* p = model.params().as<double>();
  for (const auto& e : model.layout().entries())
    if (e.shape.size() == 1)
      for (size_t i = 0; i < e.numel; ++i) p[e.offset + i] += 0.2 * rng.normal();
  model.set_attention(lh::make_attention(lh::AttentionPhase{}, cfg));

  const int B = 2, T = 5;
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (auto& t : tokens) t = int32_t(rng.below(cfg.vocab_size));
  for (auto& t : targets) t = int32_t(rng.below(cfg.vocab_size));

  model.zero_grads();
  const double loss = model.forward(tokens.data(), targets.data(), B, T);
  REQUIRE(std::isfinite(loss));
  model.backward(1.0);
  const std::vector<double> analytic(model.grads().as<double>(), model.grads().as<double>() + model.layout().total());

  // Every parameter of every tensor; central differences, step 1e-5, in double precision the
  // truncation error is ~1e-10 relative, so 1e-6 leaves a wide margin and still catches a wrong term.
  const double h = 1e-5;
  double worst = 0.0;
  for (size_t i = 0; i < model.layout().total(); ++i) {
    const double saved = p[i];
    p[i] = saved + h;
    const double up = model.forward(tokens.data(), targets.data(), B, T);
    p[i] = saved - h;
    const double down = model.forward(tokens.data(), targets.data(), B, T);
    p[i] = saved;
    const double numeric = (up - down) / (2 * h);
    const double err = std::abs(numeric - analytic[i]) / std::max(1e-4, std::abs(numeric) + std::abs(analytic[i]));
    worst = std::max(worst, err);
    if (err > 1e-6) {
      INFO("parameter element " << i << ": analytic " << analytic[i] << " numeric " << numeric);
      CHECK(err <= 1e-6);
    }
  }
  INFO("worst relative error " << worst);
  CHECK(worst < 1e-6);
}

// The logits' rows are padded inside the model (ModelConfig::logits_row_stride: 16 for V = 11);
// logits_host must hand out the unpadded [B*T, V] matrix that the loss was computed from.
TEST_CASE("logits_host is the unpadded logits matrix behind the loss", "[cpu][model]") {
  auto be = lh::make_cpu_backend(lh::DType::F64);
  const lh::ModelConfig cfg = tiny_model(false);
  REQUIRE(cfg.logits_row_stride() > cfg.vocab_size);
  lh::LlamaModel model(cfg, *be);
  model.init_weights(3);
  model.set_attention(lh::make_attention(lh::AttentionPhase{}, cfg));
  const int B = 2, T = 5, V = cfg.vocab_size;
  lh::Rng rng(5);
  std::vector<int32_t> tokens(B * T), targets(B * T);
  for (auto& t : tokens) t = int32_t(rng.below(V));
  for (auto& t : targets) t = int32_t(rng.below(V));
  const double loss = model.forward(tokens.data(), targets.data(), B, T);
  const std::vector<float> logits = model.logits_host();
  REQUIRE(logits.size() == size_t(B) * T * V);
  double sum = 0.0;
  for (size_t r = 0; r < size_t(B) * T; ++r) {
    double z = 0.0;
    for (int v = 0; v < V; ++v) z += std::exp(double(logits[r * V + v]));
    sum += std::log(z) - logits[r * V + targets[r]];
  }
  CHECK(sum / (B * T) == Approx(loss).epsilon(1e-6));  // the float download costs ~1e-7
}

TEST_CASE("gradient accumulation of two half batches equals one full batch", "[cpu][model]") {
  auto be = lh::make_cpu_backend(lh::DType::F64);
  const lh::ModelConfig cfg = tiny_model(false);
  lh::LlamaModel model(cfg, *be);
  model.init_weights(3);
  model.set_attention(lh::make_attention(lh::AttentionPhase{}, cfg));
  lh::Rng rng(5);
  const int T = 6;
  std::vector<int32_t> tok(4 * T), tgt(4 * T);
  for (auto& t : tok) t = int32_t(rng.below(cfg.vocab_size));
  for (auto& t : tgt) t = int32_t(rng.below(cfg.vocab_size));

  model.zero_grads();
  model.forward(tok.data(), tgt.data(), 4, T);
  model.backward(1.0);
  const std::vector<double> full(model.grads().as<double>(), model.grads().as<double>() + model.layout().total());

  model.zero_grads();
  for (int half = 0; half < 2; ++half) {
    model.forward(tok.data() + half * 2 * T, tgt.data() + half * 2 * T, 2, T);
    model.backward(0.5);
  }
  const double* acc = model.grads().as<double>();
  for (size_t i = 0; i < full.size(); ++i) REQUIRE(acc[i] == Approx(full[i]).epsilon(1e-10).margin(1e-14));
}

TEST_CASE("parameter layout: names, shapes and one contiguous allocation", "[cpu][model]") {
  lh::ModelConfig m;
  m.dim = 64, m.n_layers = 3, m.n_heads = 4, m.n_kv_heads = 2, m.ffn_hidden = 96, m.vocab_size = 257;
  const lh::ParamLayout untied(m);
  const int64_t C = 64, D = 16;
  CHECK(untied.at("layers.2.wqkv").shape == std::vector<int64_t>{(4 + 2 * 2) * D, C});
  CHECK(untied.at("layers.0.w_gate_up").shape == std::vector<int64_t>{2 * 96, C});
  CHECK(untied.at("layers.1.wo").weight_decay);
  CHECK_FALSE(untied.at("embed").weight_decay);
  CHECK_FALSE(untied.at("final_norm").weight_decay);
  size_t expected = 0;
  for (const auto& e : untied.entries()) {
    CHECK(e.offset == expected);
    expected += e.numel;
  }
  CHECK(untied.total() == expected);
  m.tied_embeddings = true;
  const lh::ParamLayout tied(m);
  CHECK(tied.find("lm_head") == nullptr);
  CHECK(untied.total() - tied.total() == size_t(257 * 64));
  // The arithmetic count that config validation bounds is the layout's.
  CHECK(lh::parameter_count(m) == double(tied.total()));
  m.tied_embeddings = false;
  CHECK(lh::parameter_count(m) == double(untied.total()));
}

TEST_CASE("activation recomputation gives bit-identical loss and gradients", "[cpu][model]") {
  auto be = lh::make_cpu_backend(lh::DType::F32);
  lh::ModelConfig cfg = tiny_model(false);
  cfg.n_layers = 3;
  lh::LlamaModel model(cfg, *be);
  model.init_weights(21);
  model.set_attention(lh::make_attention(lh::AttentionPhase{}, cfg));
  lh::Rng rng(8);
  const int B = 2, T = 7;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (auto& t : tok) t = int32_t(rng.below(cfg.vocab_size));
  for (auto& t : tgt) t = int32_t(rng.below(cfg.vocab_size));
  auto run = [&](lh::Recompute mode) {
    model.set_recompute(mode);
    model.zero_grads();
    const double loss = model.forward(tok.data(), tgt.data(), B, T);
    model.backward();
    const float* g = model.grads().as<float>();
    return std::make_pair(loss, std::vector<float>(g, g + model.layout().total()));
  };
  const auto kept = run(lh::Recompute::kNone);
  for (lh::Recompute mode : {lh::Recompute::kFull, lh::Recompute::kSelective}) {
    INFO("recompute " << lh::recompute_name(mode));
    const auto recomputed = run(mode);
    CHECK(kept.first == recomputed.first);
    CHECK(kept.second == recomputed.second);
  }
}

TEST_CASE("recompute auto keeps as much as fits in the backend's memory, layer by layer", "[cpu][model]") {
  using lh::Recompute;
  lh::ModelConfig cfg = tiny_model(false);
  cfg.n_layers = 3;
  const int B = 4, T = cfg.max_seq_len;
  lh::Rng rng(4);
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (auto& t : tok) t = int32_t(rng.below(cfg.vocab_size));
  for (auto& t : tgt) t = int32_t(rng.below(cfg.vocab_size));
  struct Use {
    size_t peak, arena;
    std::vector<Recompute> modes;
    std::string summary;
    double loss;
    std::vector<float> grads;
  };
  // One forward and backward on a backend limited to `limit` bytes.
  auto run = [&](size_t limit, Recompute mode) {
    auto be = lh::make_cpu_backend(lh::DType::F32, limit);
    lh::LlamaModel model(cfg, *be);
    model.init_weights(1);
    model.set_attention(lh::make_attention(lh::AttentionPhase{}, cfg));
    model.set_recompute(mode);
    CHECK(model.recompute_summary() == lh::recompute_name(mode));  // unresolved before the first forward
    const double loss = model.forward(tok.data(), tgt.data(), B, T);
    model.backward();
    const float* g = model.grads().as<float>();
    return Use{be->peak_bytes(), model.activation_bytes(), model.layer_recompute(), model.recompute_summary(), loss,
               std::vector<float>(g, g + model.layout().total())};
  };
  auto count = [](const Use& u, Recompute m) { return std::count(u.modes.begin(), u.modes.end(), m); };
  const Use none = run(SIZE_MAX, Recompute::kNone), sel = run(SIZE_MAX, Recompute::kSelective),
            full = run(SIZE_MAX, Recompute::kFull);
  REQUIRE(none.arena > sel.arena);
  REQUIRE(sel.arena > full.arena);
  CHECK(none.peak - sel.peak == none.arena - sel.arena);  // the arenas are what differs
  CHECK(sel.summary == "selective");

  CHECK(run(SIZE_MAX, Recompute::kAuto).summary == "none");
  CHECK(run(none.peak, Recompute::kAuto).summary == "none");
  CHECK(run(sel.peak, Recompute::kAuto).summary == "selective");
  // Between two uniform layouts auto mixes them, and every mix gives the bits of keeping everything.
  for (const auto& [lo, hi, cheap, dear] : {std::make_tuple(&sel, &none, Recompute::kNone, Recompute::kSelective),
                                            std::make_tuple(&full, &sel, Recompute::kSelective, Recompute::kFull)}) {
    const Use mixed = run((lo->peak + hi->peak) / 2, Recompute::kAuto);
    INFO(mixed.summary);
    CHECK(count(mixed, cheap) > 0);
    CHECK(count(mixed, dear) > 0);
    CHECK(count(mixed, cheap) + count(mixed, dear) == cfg.n_layers);
    CHECK(mixed.arena < hi->arena);
    CHECK(mixed.arena > lo->arena);
    CHECK(mixed.loss == none.loss);
    CHECK(mixed.grads == none.grads);
  }
  CHECK_THROWS_WITH(run(full.peak - 1, Recompute::kAuto), Catch::Contains("out of memory"));

  // A new attention backend (a training phase switch) has other workspaces: auto chooses again on
  // the next forward; a fixed mode keeps its arena.
  for (Recompute mode : {Recompute::kAuto, Recompute::kSelective}) {
    INFO(lh::recompute_name(mode));
    auto be = lh::make_cpu_backend(lh::DType::F32, (sel.peak + none.peak) / 2);
    lh::LlamaModel model(cfg, *be);
    model.init_weights(1);
    model.set_attention(lh::make_attention(lh::AttentionPhase{}, cfg));
    model.set_recompute(mode);
    const double first = model.forward(tok.data(), tgt.data(), B, T);
    const auto modes = model.layer_recompute();
    REQUIRE(modes.size() == size_t(cfg.n_layers));
    model.set_attention(lh::make_attention(lh::AttentionPhase{}, cfg));
    CHECK(model.layer_recompute().empty() == (mode == Recompute::kAuto));
    CHECK(model.forward(tok.data(), tgt.data(), B, T) == first);
    CHECK(model.layer_recompute() == modes);
  }
}

TEST_CASE("matmul_forward_residual's default is the GEMM then the residual add, never in place",
          "[cpu][model]") {
  auto be = lh::make_cpu_backend();
  const int N = 3, IC = 4, OC = 5;
  lh::Buffer x = be->allocate(lh::DType::F32, N * IC), w = be->allocate(lh::DType::F32, OC * IC),
             r = be->allocate(lh::DType::F32, N * OC), out = be->allocate(lh::DType::F32, N * OC);
  lh::Rng rng(7);
  for (lh::Buffer* b : {&x, &w, &r})
    for (size_t i = 0; i < b->view().numel; ++i) b->view().as<float>()[i] = float(rng.normal());
  be->matmul_forward_residual(out.view(), x.view(), w.view(), r.view(), N, IC, OC);
  const float *xs = x.view().as<float>(), *ws = w.view().as<float>(), *rs = r.view().as<float>();
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double dot = 0;
      for (int i = 0; i < IC; ++i) dot += double(xs[n * IC + i]) * ws[o * IC + i];
      CHECK(out.view().as<float>()[n * OC + o] == Approx(dot + rs[n * OC + o]).epsilon(1e-5));
    }
  CHECK_THROWS_AS(be->matmul_forward_residual(r.view(), x.view(), w.view(), r.view(), N, IC, OC),
                  std::invalid_argument);
}

TEST_CASE("a model that does not fit names its sizes", "[cpu][model]") {
  const lh::ModelConfig m = tiny_model(false);
  auto small = lh::make_cpu_backend(lh::DType::F32, /*memory_limit=*/1024);  // bytes: less than the weights
  CHECK_THROWS_WITH(lh::LlamaModel(m, *small),
                    Catch::Contains("parameters (model.dim " + std::to_string(m.dim)) &&
                        Catch::Contains("vocab_size " + std::to_string(m.vocab_size)) &&
                        Catch::Contains("out of memory"));

  // Room for the weights but not for a batch's activations: the batch's settings are named.
  auto measure = lh::make_cpu_backend(lh::DType::F32);
  { lh::LlamaModel probe(m, *measure); }
  auto tight = lh::make_cpu_backend(lh::DType::F32, measure->peak_bytes() + 64);
  lh::LlamaModel model(m, *tight);
  model.set_attention(lh::make_attention(lh::AttentionPhase{}, m));
  const int B = 2, T = m.max_seq_len;
  const std::vector<int32_t> tokens(size_t(B) * T, 1), targets(size_t(B) * T, 2);
  CHECK_THROWS_WITH(model.forward(tokens.data(), targets.data(), B, T),
                    Catch::Contains("a batch of 2 x 8 tokens (data.micro_batch x data.seq_len") &&
                        Catch::Contains("out of memory"));
}

TEST_CASE("optimizer moments that do not fit say so", "[cpu][model]") {
  const lh::ModelConfig m = tiny_model(false);
  auto measure = lh::make_cpu_backend(lh::DType::F32);
  { lh::LlamaModel probe(m, *measure); }
  auto tight = lh::make_cpu_backend(lh::DType::F32, measure->peak_bytes() + 64);  // the model, not its moments
  lh::LlamaModel model(m, *tight);
  CHECK_THROWS_WITH(lh::AdamW(lh::OptimizerConfig{}, model.layout(), *tight),
                    Catch::Contains("AdamW's two moments (" + std::to_string(model.layout().total()) + " fp32") &&
                        Catch::Contains("out of memory"));
}
