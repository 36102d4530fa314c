// The Llama-3 decoder over the Backend op API. All parameters live in one allocation and all
// gradients in another, with the same named layout (ParamLayout); the model code is the same on
// every device.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lighthouse/attention.h"
#include "lighthouse/backend.h"
#include "lighthouse/config.h"

namespace lh {

// One named parameter tensor inside the flat parameter allocation.
struct ParamEntry {
  std::string name;            // e.g. "layers.3.wqkv"
  std::vector<int64_t> shape;  // row-major; linear weights are [out, in]
  size_t offset = 0;           // in elements
  size_t numel = 0;
  bool weight_decay = false;   // AdamW decays matrices only, not norms or embeddings
};

// The flat parameter layout. Per layer: attn_norm [C], wqkv [(H + 2*Hkv) * D, C] (query rows, then
// key rows, then value rows), wo [C, H*D], mlp_norm [C], w_gate_up [2F, C] (gate rows, then up
// rows), w_down [C, F]. Around the layers: embed [V, C], final_norm [C], lm_head [V, C] (absent
// when tied to the embedding).
class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& cfg);
  const std::vector<ParamEntry>& entries() const { return entries_; }
  size_t total() const { return total_; }
  const ParamEntry& at(const std::string& name) const;  // throws naming the parameter
  const ParamEntry* find(const std::string& name) const;

 private:
  void add(const std::string& name, std::vector<int64_t> shape, bool decay);
  std::vector<ParamEntry> entries_;
  size_t total_ = 0;
};

class LlamaModel {
 public:
  // min_elements > layout total pads the parameter, gradient and compute-copy allocations (with
  // zeros) so that data-parallel collectives can split them into equal per-rank chunks.
  LlamaModel(const ModelConfig& cfg, Backend& backend, size_t min_elements = 0);
  ~LlamaModel();

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  Backend& backend() const { return be_; }
  Tensor params() const { return params_.slice(0, layout_.total()); }  // master weights (param dtype)
  Tensor grads() const { return grads_.slice(0, layout_.total()); }    // param dtype
  Tensor padded_params() const { return params_.view(); }              // with the padding
  Tensor padded_grads() const { return grads_.view(); }
  Tensor padded_compute_copy() const { return compute_.view(); }  // empty when dtypes agree
  // The weights the forward pass reads (act dtype): the master weights themselves when the dtypes
  // agree (CPU), else a compute copy that the optimizer refreshes. Empty when they agree.
  Tensor compute_copy() const { return compute_.view().data ? compute_.slice(0, layout_.total()) : Tensor{}; }
  // Refreshes the compute copy after the master weights were written (init, checkpoint load).
  void sync_compute_weights();
  Tensor param(const std::string& name) const;  // a view of one parameter
  Tensor grad(const std::string& name) const;

  // Normal(0, init_std) for matrices (output projections scaled by 1/sqrt(2 * n_layers)), ones
  // for norms; drawn on the host in layout order so every backend starts from the same bits.
  void init_weights(uint64_t seed);

  void set_attention(std::unique_ptr<AttentionOp> attention);
  // Activation recomputation (training.recompute): bit-identical results in every mode, less
  // memory. kAuto resolves when the activations are allocated (first forward of a larger shape):
  // starting from none everywhere, layers switch to selective one by one, then to full, until the
  // activations fit Backend::allocatable_bytes(). The second form sets one mode per layer.
  void set_recompute(Recompute mode);
  void set_recompute(const std::vector<Recompute>& per_layer);
  // The per-layer modes the activations are laid out with (empty before the first forward), the
  // same as text ("selective", or "none x 12 + selective x 18"; the requested mode before the
  // first forward) and the bytes of that layout (0 before the first forward).
  std::vector<Recompute> layer_recompute() const;
  std::string recompute_summary() const;
  size_t activation_bytes() const;
  const AttentionOp& attention() const { return *attention_; }
  // Lays out now what training batches of up to B x T tokens need (activations, the attention
  // backend's state, the library workspace of forward and backward), as the first training step of
  // that size would; throws OutOfMemory naming the settings when it does not fit.
  // release_batch_buffers() frees all of it and the attention backend (set one again before the
  // next forward).
  void reserve_batch(int B, int T) { ensure_capacity(B, T, /*backward_workspace=*/true); }
  void release_batch_buffers();

  // Forward pass on host token ids [B*T]. With targets, returns the mean cross-entropy (nats) and
  // keeps what backward needs; without, returns 0 and only computes logits.
  double forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Called during backward whenever more gradients are final: those at flat offsets >= ready_from
  // are not written again by this backward (the work that writes them is enqueued, maybe not yet
  // done, on the backend's stream). ready_from only decreases and ends at 0. Data parallelism uses
  // it to reduce buckets of gradients while backward goes on.
  using GradsReadyHook = std::function<void(size_t ready_from)>;
  // Backward of the last forward with targets. Gradients ACCUMULATE into grads(); the loss is
  // scaled by loss_scale (e.g. 1 / grad_accum) on top of the mean over tokens.
  void backward(double loss_scale = 1.0, const GradsReadyHook& on_ready = {});
  void zero_grads();

  // Logits [B*T, V] of the last forward, converted to float on the host.
  std::vector<float> logits_host() const;

 private:
  struct Activations;
  // Lays out the buffers for batches up to B x T (the first forward of a larger shape does);
  // backward_workspace takes the attention library's workspace for training in every recompute
  // mode (auto always takes it first, since the layout depends on what is left).
  void ensure_capacity(int B, int T, bool backward_workspace = false);
  std::vector<Recompute> resolve_recompute(int B, int T) const;
  // Whether recompute auto chooses the layout (no per-layer modes were set).
  bool auto_layout() const { return recompute_ == Recompute::kAuto && per_layer_recompute_.empty(); }
  // The layer's forward around attention: everything before it (norm, qkv, RoPE) and after it
  // (output projection, residual, MLP). Backward with full recompute reruns both, not attention.
  void layer_pre_attention(int l, int B, int T);
  void layer_post_attention(int l, int N, bool write_output);
  // Selective recompute: refills the layer's norm outputs and SwiGLU output from what it kept.
  void recompute_norms_and_swiglu(int l, int N);

  ModelConfig cfg_;
  Backend& be_;
  ParamLayout layout_;
  Tensor weights() const { return compute_.view().data ? compute_.view() : params_.view(); }
  Tensor weight(const std::string& name) const;

  Buffer params_, grads_, compute_;
  std::unique_ptr<AttentionOp> attention_;
  std::unique_ptr<Activations> acts_;
  int B_ = 0, T_ = 0;      // shape of the last forward
  bool has_targets_ = false;
  Recompute recompute_ = Recompute::kNone;
  std::vector<Recompute> per_layer_recompute_;  // when set, overrides recompute_
};

}  // namespace lh
