// The Llama-3 decoder's forward and backward passes over the Backend op API.
//   x0 = embed[tokens]
//   per layer: mid = x + wo(attn(rope(wqkv(rmsnorm(x)))));  x' = mid + w_down(swiglu(w_gate_up(rmsnorm(mid))))
//   logits = lm_head(rmsnorm(x_L)); loss = mean cross-entropy
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "lighthouse/host_io.h"
#include "lighthouse/model.h"
#include "lighthouse/rng.h"
#include "model/activations.h"

namespace lh {

struct LlamaModel::Activations : ActivationArena {
  using ActivationArena::ActivationArena;
};

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Per-layer parameter views, looked up once per pass by name (names, not indices, tie the model
// code to the layout).
struct LayerWeights {
  Tensor attn_norm, wqkv, wo, mlp_norm, w_gate_up, w_down;
};
const char* const kLayerParams[] = {"attn_norm", "wqkv", "wo", "mlp_norm", "w_gate_up", "w_down"};
std::string layer_prefix(int l) { return "layers." + std::to_string(l) + "."; }

LayerWeights layer_weights(const ParamLayout& layout, const Tensor& flat, int l) {
  const std::string p = layer_prefix(l);
  auto get = [&](const char* n) {
    const ParamEntry& e = layout.at(p + n);
    return flat.slice(e.offset, e.numel);  // works on padded allocations too
  };
  return {get("attn_norm"), get("wqkv"), get("wo"), get("mlp_norm"), get("w_gate_up"), get("w_down")};
}

// The lowest flat offset of layer l's parameters.
size_t layer_begin(const ParamLayout& layout, int l) {
  size_t begin = layout.total();
  for (const char* n : kLayerParams) begin = std::min(begin, layout.at(layer_prefix(l) + n).offset);
  return begin;
}
}  // namespace

LlamaModel::LlamaModel(const ModelConfig& cfg, Backend& backend, size_t min_elements)
    : cfg_(cfg), be_(backend), layout_(cfg) {
  const size_t n = std::max(layout_.total(), min_elements);
  // Names the config keys that size them.
  naming_purpose("the model's " + std::to_string(layout_.total()) + " parameters (model.dim " + std::to_string(cfg.dim) +
                     ", n_layers " + std::to_string(cfg.n_layers) + ", ffn_hidden " + std::to_string(cfg.ffn_hidden) +
                     ", vocab_size " + std::to_string(cfg.vocab_size) + ")",
                 [&] {
                   params_ = be_.allocate(be_.param_dtype(), n);
                   grads_ = be_.allocate(be_.param_dtype(), n);
                   if (be_.act_dtype() != be_.param_dtype()) compute_ = be_.allocate(be_.act_dtype(), n);
                 });
}

Tensor LlamaModel::weight(const std::string& name) const {
  const ParamEntry& e = layout_.at(name);
  return weights().slice(e.offset, e.numel);
}

void LlamaModel::sync_compute_weights() {
  if (compute_.view().data) be_.convert(compute_.view(), params_.view());
}

LlamaModel::~LlamaModel() = default;

Tensor LlamaModel::param(const std::string& name) const {
  const ParamEntry& e = layout_.at(name);
  return params_.slice(e.offset, e.numel);
}

Tensor LlamaModel::grad(const std::string& name) const {
  const ParamEntry& e = layout_.at(name);
  return grads_.slice(e.offset, e.numel);
}

void LlamaModel::init_weights(uint64_t seed) {
  Rng rng(seed);
  const double out_std = cfg_.init_std / std::sqrt(2.0 * cfg_.n_layers);
  std::vector<double> host(layout_.total());
  for (const ParamEntry& e : layout_.entries()) {
    const bool is_norm = e.shape.size() == 1;
    const bool is_output_proj = ends_with(e.name, ".wo") || ends_with(e.name, ".w_down");
    const double std = is_output_proj ? out_std : cfg_.init_std;
    for (size_t i = 0; i < e.numel; ++i) host[e.offset + i] = is_norm ? 1.0 : std * rng.normal();
  }
  upload_doubles(be_, params(), host);
  sync_compute_weights();
}

void LlamaModel::set_attention(std::unique_ptr<AttentionOp> attention) {
  attention_ = std::move(attention);
  // Another backend needs other workspaces, so `auto` chooses the activation layout afresh
  // (every layout gives the same bits).
  if (auto_layout()) acts_.reset();
}

void LlamaModel::set_recompute(Recompute mode) {
  if (mode != recompute_ || !per_layer_recompute_.empty()) acts_.reset();  // the arena's layout depends on it
  recompute_ = mode;
  per_layer_recompute_.clear();
}

void LlamaModel::set_recompute(const std::vector<Recompute>& per_layer) {
  if (per_layer.size() != size_t(cfg_.n_layers))
    throw std::invalid_argument("set_recompute: " + std::to_string(per_layer.size()) + " modes for " +
                                std::to_string(cfg_.n_layers) + " layers");
  for (Recompute m : per_layer)
    if (m == Recompute::kAuto) throw std::invalid_argument("set_recompute: auto is not a per-layer mode");
  if (per_layer != per_layer_recompute_) acts_.reset();
  per_layer_recompute_ = per_layer;
}

void LlamaModel::zero_grads() { be_.fill_zero(grads_.view()); }

void LlamaModel::ensure_capacity(int B, int T, bool backward_workspace) {
  if (T > cfg_.max_seq_len)
    throw std::invalid_argument("sequence length " + std::to_string(T) + " exceeds model.max_seq_len " +
                                std::to_string(cfg_.max_seq_len));
  if (!attention_) throw std::logic_error("LlamaModel: no attention backend set");
  // The attention backend's buffers first: they count against what recompute auto may use, and
  // so does the library workspace it will need, which it takes now for auto's sake or when asked
  // (reserve_batch); a forward-only pass, eval's, would take the backward's workspace for nothing.
  const AttentionShape shape{B, T, cfg_.n_heads, cfg_.n_kv_heads, cfg_.head_dim()};
  try {
    attention_->reserve(be_, cfg_.n_layers, shape);
    if (!acts_ || acts_->max_tokens() < B * T) {
      acts_.reset();  // release a smaller arena before sizing the new one
      if (auto_layout() || backward_workspace) attention_->prepare_workspace(be_, cfg_.n_layers, shape);
      be_.prepare_matmul(cfg_.dim, cfg_.vocab_size, cfg_.logits_row_stride());  // the output layer's scratch
      be_.prepare_rope(T, cfg_.head_dim(), cfg_.rope_theta);
      acts_ = std::make_unique<Activations>(be_, cfg_, B, T, resolve_recompute(B, T));
    }
  } catch (const OutOfMemory& e) {  // name the settings that size a batch's buffers
    throw OutOfMemory("a batch of " + std::to_string(B) + " x " + std::to_string(T) +
                             " tokens (data.micro_batch x data.seq_len; training.recompute can shrink its "
                             "activations) does not fit: " + e.what());
  }
}

void LlamaModel::release_batch_buffers() {
  acts_.reset();
  attention_.reset();
  be_.release_scratch();
}

std::vector<Recompute> LlamaModel::resolve_recompute(int B, int T) const {
  if (!per_layer_recompute_.empty()) return per_layer_recompute_;
  std::vector<Recompute> modes(size_t(cfg_.n_layers), recompute_ == Recompute::kAuto ? Recompute::kNone : recompute_);
  if (recompute_ != Recompute::kAuto) return modes;
  // Least recomputation first: a layer switched to selective gives up its norm and SwiGLU outputs,
  // one switched on to full its GEMM outputs as well. Which layers switch does not matter for speed or
  // bits (attention is never recomputed), so they go in order.
  const size_t available = be_.allocatable_bytes();
  auto fits = [&] { return Activations::bytes(be_, cfg_, B, T, modes) <= available; };
  for (Recompute step : {Recompute::kSelective, Recompute::kFull})
    for (size_t l = 0; l < modes.size() && !fits(); ++l) modes[l] = step;
  return modes;  // all full if even that does not fit: its allocation then says so
}

std::vector<Recompute> LlamaModel::layer_recompute() const { return acts_ ? acts_->layer_modes() : std::vector<Recompute>{}; }

std::string LlamaModel::recompute_summary() const {
  if (!acts_) return per_layer_recompute_.empty() ? recompute_name(recompute_) : "per layer";
  const auto& modes = acts_->layer_modes();
  std::string out;
  for (Recompute m : {Recompute::kNone, Recompute::kSelective, Recompute::kFull}) {
    const auto n = std::count(modes.begin(), modes.end(), m);
    if (size_t(n) == modes.size()) return recompute_name(m);
    if (n > 0) out += (out.empty() ? "" : " + ") + std::string(recompute_name(m)) + " x " + std::to_string(n);
  }
  return out;
}

size_t LlamaModel::activation_bytes() const {
  return acts_ ? Activations::bytes(be_, cfg_, acts_->max_tokens(), 1, acts_->layer_modes()) : 0;
}

double LlamaModel::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  ensure_capacity(B, T);
  B_ = B, T_ = T, has_targets_ = targets != nullptr;
  const int N = B * T, C = cfg_.dim, V = cfg_.vocab_size;
  const int H = cfg_.n_heads, Hkv = cfg_.n_kv_heads, D = cfg_.head_dim();
  const AttentionShape shape{B, T, H, Hkv, D};
  Activations& a = *acts_;
  be_.copy_from_host(a.tokens(N), tokens);

  be_.embedding_forward(a.layer(0, N).x, a.tokens(N), weight("embed"), N, C);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    const LayerActivations act = a.layer(l, N);
    layer_pre_attention(l, B, T);
    attention_->forward(be_, l, act.attn, act.qkv, shape);
    layer_post_attention(l, N, /*write_output=*/true);
  }
  be_.rmsnorm_forward(a.final_ln(N), a.final_rstd(N), a.final_x(N), weight("final_norm"), N, C, cfg_.norm_eps);
  const Tensor head = cfg_.tied_embeddings ? weight("embed") : weight("lm_head");
  be_.matmul_forward(a.logits(N), a.final_ln(N), head, N, C, V, cfg_.logits_row_stride());
  if (!targets) return 0.0;

  be_.copy_from_host(a.targets(N), targets);
  be_.cross_entropy_forward(a.losses(N), a.logits_lse(N), a.logits(N), a.targets(N), N, V, cfg_.logits_row_stride());
  const std::vector<double> losses = download_doubles(be_, a.losses(N));
  double sum = 0.0;
  for (double x : losses) sum += x;  // fixed order: deterministic
  return sum / N;
}

void LlamaModel::layer_pre_attention(int l, int B, int T) {
  const int N = B * T, C = cfg_.dim;
  const LayerWeights w = layer_weights(layout_, weights(), l);
  const LayerActivations act = acts_->layer(l, N);
  be_.rmsnorm_forward(act.ln1, act.rstd1, act.x, w.attn_norm, N, C, cfg_.norm_eps);
  be_.matmul_forward(act.qkv, act.ln1, w.wqkv, N, C, cfg_.qkv_dim(), cfg_.qkv_dim());
  be_.rope_forward(act.qkv, B, T, cfg_.n_heads, cfg_.n_kv_heads, cfg_.head_dim(), cfg_.rope_theta);
}

void LlamaModel::layer_post_attention(int l, int N, bool write_output) {
  const int C = cfg_.dim, F = cfg_.ffn_hidden;
  const LayerWeights w = layer_weights(layout_, weights(), l);
  const LayerActivations act = acts_->layer(l, N);
  const Tensor out = l + 1 < cfg_.n_layers ? acts_->layer(l + 1, N).x : acts_->final_x(N);
  be_.matmul_forward_residual(act.mid, act.attn, w.wo, act.x, N, cfg_.q_dim(), C);  // mid = attn @ wo^T + x
  be_.rmsnorm_forward(act.ln2, act.rstd2, act.mid, w.mlp_norm, N, C, cfg_.norm_eps);
  be_.matmul_forward(act.gate_up, act.ln2, w.w_gate_up, N, C, 2 * F, 2 * F);
  be_.swiglu_forward(act.hidden, act.gate_up, N, F);
  if (!write_output) return;  // recomputation: backward needs `hidden`, not the layer output
  be_.matmul_forward_residual(out, act.hidden, w.w_down, act.mid, N, F, C);  // out = hidden @ w_down^T + mid
}

void LlamaModel::recompute_norms_and_swiglu(int l, int N) {
  const int C = cfg_.dim;
  const LayerWeights w = layer_weights(layout_, weights(), l);
  const LayerActivations act = acts_->layer(l, N);
  be_.rmsnorm_forward(act.ln1, act.rstd1, act.x, w.attn_norm, N, C, cfg_.norm_eps);
  be_.rmsnorm_forward(act.ln2, act.rstd2, act.mid, w.mlp_norm, N, C, cfg_.norm_eps);
  be_.swiglu_forward(act.hidden, act.gate_up, N, cfg_.ffn_hidden);
}

void LlamaModel::backward(double loss_scale, const GradsReadyHook& on_ready) {
  if (!has_targets_) throw std::logic_error("LlamaModel::backward needs a forward with targets");
  const int B = B_, T = T_, N = B * T, C = cfg_.dim, V = cfg_.vocab_size, F = cfg_.ffn_hidden;
  const int H = cfg_.n_heads, Hkv = cfg_.n_kv_heads, D = cfg_.head_dim();
  const AttentionShape shape{B, T, H, Hkv, D};
  Activations& a = *acts_;
  const Tensor wp = weights(), gp = grads_.view();

  // Loss -> logits (in place) -> final norm input. dresid holds d(loss)/d(residual stream).
  const Tensor dlogits = a.logits(N);
  be_.cross_entropy_backward(dlogits, a.logits(N), a.logits_lse(N), a.targets(N), N, V, cfg_.logits_row_stride(),
                             loss_scale / N);
  const Tensor head = cfg_.tied_embeddings ? weight("embed") : weight("lm_head");
  const Tensor dhead = cfg_.tied_embeddings ? grad("embed") : grad("lm_head");
  be_.matmul_backward(a.dln(N), dhead, dlogits, a.final_ln(N), head, N, C, V, cfg_.logits_row_stride());
  be_.fill_zero(a.dresid(N));
  be_.rmsnorm_backward(a.dresid(N), grad("final_norm"), a.dln(N), a.final_x(N), weight("final_norm"),
                       a.final_rstd(N), N, C);
  // The layout is embed, layers..., final_norm[, lm_head]; backward finishes it from the end.
  auto ready = [&](size_t from) {
    if (on_ready) on_ready(from);
  };
  ready(layout_.at("final_norm").offset);

  for (int l = cfg_.n_layers - 1; l >= 0; --l) {
    const LayerWeights w = layer_weights(layout_, wp, l);
    const LayerWeights g = layer_weights(layout_, gp, l);
    const LayerActivations act = a.layer(l, N);
    // Refill the slots this layer shares with the others (attention is always kept).
    const Recompute mode = a.layer_modes()[size_t(l)];
    if (mode == Recompute::kFull) {
      layer_pre_attention(l, B, T);
      layer_post_attention(l, N, /*write_output=*/false);
    } else if (mode == Recompute::kSelective) {
      recompute_norms_and_swiglu(l, N);
    }
    // MLP block: dresid is d/d(out); out = mid + w_down(swiglu(w_gate_up(ln2(mid)))).
    be_.matmul_backward(a.dhidden(N), g.w_down, a.dresid(N), act.hidden, w.w_down, N, F, C, C);
    be_.swiglu_backward(a.dgate_up(N), a.dhidden(N), act.gate_up, N, F);
    be_.matmul_backward(a.dln(N), g.w_gate_up, a.dgate_up(N), act.ln2, w.w_gate_up, N, C, 2 * F, 2 * F);
    be_.rmsnorm_backward(a.dresid(N), g.mlp_norm, a.dln(N), act.mid, w.mlp_norm, act.rstd2, N, C);
    // Attention block: dresid is now d/d(mid); mid = x + wo(attn(rope(wqkv(ln1(x))))).
    be_.matmul_backward(a.dattn(N), g.wo, a.dresid(N), act.attn, w.wo, N, cfg_.q_dim(), C, C);
    attention_->backward(be_, l, a.dqkv(N), a.dattn(N), act.qkv, act.attn, shape);
    be_.rope_backward(a.dqkv(N), B, T, H, Hkv, D, cfg_.rope_theta);
    be_.matmul_backward(a.dln(N), g.wqkv, a.dqkv(N), act.ln1, w.wqkv, N, C, cfg_.qkv_dim(), cfg_.qkv_dim());
    be_.rmsnorm_backward(a.dresid(N), g.attn_norm, a.dln(N), act.x, w.attn_norm, act.rstd1, N, C);
    ready(layer_begin(layout_, l));
  }
  be_.embedding_backward(grad("embed"), a.dresid(N), a.tokens(N), N, C);
  ready(0);
  has_targets_ = false;  // the logits buffer now holds gradients
}

std::vector<float> LlamaModel::logits_host() const {
  const int V = cfg_.vocab_size, ld = cfg_.logits_row_stride();
  const std::vector<float> padded = download_floats(be_, acts_->logits(B_ * T_));
  std::vector<float> logits(size_t(B_) * T_ * V);
  for (size_t row = 0; row < size_t(B_) * T_; ++row)
    std::copy_n(padded.begin() + std::ptrdiff_t(row * ld), V, logits.begin() + std::ptrdiff_t(row * V));
  return logits;
}

}  // namespace lh
