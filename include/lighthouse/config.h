// The run configuration: one struct per JSON section. Parsing validates every key (unknown keys,
// wrong types, out-of-range and inconsistent values are errors that name the JSON path) so that the
// rest of the program can trust these fields. docs/config.md documents every key.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lh {

// Thrown for any invalid configuration; what() reads "<json path>: <reason>", e.g.
// "model.n_heads: 6 does not divide model.dim = 256".
struct ConfigError : std::runtime_error {
  ConfigError(const std::string& path, const std::string& reason)
      : std::runtime_error(path + ": " + reason), path(path) {}
  std::string path;
};

struct ModelConfig {
  int dim = 256;
  int n_layers = 4;
  int n_heads = 4;
  int n_kv_heads = 4;
  int ffn_hidden = 768;       // SwiGLU hidden width
  int vocab_size = 257;       // byte vocab + end-of-document
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  int max_seq_len = 1024;
  bool tied_embeddings = false;
  double init_std = 0.02;     // normal init; output projections get init_std / sqrt(2 * n_layers)

  int head_dim() const { return dim / n_heads; }
  int q_dim() const { return n_heads * head_dim(); }
  int kv_dim() const { return n_kv_heads * head_dim(); }
  int qkv_dim() const { return q_dim() + 2 * kv_dim(); }
  // Row stride of the logits: vocab_size rounded up to 8 elements (16 bytes of bf16). With a
  // vocabulary that is not a multiple of 8 (257 bytes, GPT-2's 50,257) unpadded rows leave
  // cuBLASLt only slow, less aligned kernels for the output layer's GEMMs (docs/benchmarks.md).
  int logits_row_stride() const { return (vocab_size + 7) / 8 * 8; }
};

struct DataConfig {
  std::vector<std::string> train;  // shard files, directories (all *.bin inside) or glob patterns
  std::vector<std::string> val;
  int seq_len = 256;
  int micro_batch = 4;             // sequences per forward/backward pass on one device
};

struct OptimizerConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;  // decoupled; not applied to norms and embeddings
  double grad_clip = 1.0;     // global L2 norm; 0 disables clipping
};

struct ScheduleConfig {
  std::string decay = "cosine";  // constant | cosine | linear | wsd
  int warmup_steps = 0;          // linear warm-up from 0 to lr
  double min_lr = 0.0;           // the floor that decays end at (absolute)
  double decay_fraction = 0.2;   // wsd only: the final fraction of steps that decays
};

// Activation recomputation (training.recompute); what each mode keeps: src/model/activations.cpp.
// kAuto takes the first of none, selective, full whose activations fit the device (LlamaModel).
enum class Recompute { kNone, kSelective, kFull, kAuto };
const char* recompute_name(Recompute r);  // "none", "selective", "full", "auto"

struct TrainingConfig {
  int steps = 1000;
  int global_batch = 0;       // sequences per optimizer step over all ranks; 0 = derive from grad_accum
  int grad_accum = 0;         // micro-batches per rank per step; 0 = derive from global_batch
  uint64_t seed = 1337;
  int eval_interval = 100;    // steps between validation passes; 0 disables
  int eval_batches = 4;       // micro-batches per validation pass
  int checkpoint_interval = 0;  // steps between checkpoints; 0 = only at the end
  int keep_last = 3;          // checkpoints kept in the run directory; 0 keeps all
  std::string device = "auto";  // auto | cpu | cuda
  Recompute recompute = Recompute::kAuto;  // which activations backward recomputes instead of keeping
  bool deterministic = true;  // bitwise reproducible kernels; false allows cuDNN's atomic attention backward
  // The deterministic attention backward on CUDA: "cudnn" (cuDNN's), "flash" (ours,
  // kernels/cuda/flash_backward.h; O(N) scratch; cuDNN's where it does not apply) or "auto" (ours
  // for sequences of 81,920 tokens and longer).
  std::string attention_backward = "auto";
  double grad_bucket_mb = 32;  // data parallel: MiB of fp32 gradients per bucket reduced during backward
};

// One span of training steps and the attention backend used during it. `options` holds the
// backend's own knobs (validated with the config: src/config/attention_options.cpp); dense has none.
struct AttentionPhase {
  int until_step = 0;  // exclusive end of the phase; phases cover [0, steps)
  std::string attention = "dense";
  nlohmann::json options = nlohmann::json::object();
};

struct AttentionConfig {
  std::vector<AttentionPhase> phases;  // empty = dense for the whole run
};

struct LoggingConfig {
  std::string dir = "runs/default";  // the run directory: metrics.jsonl and checkpoints live here
  int interval = 1;                  // steps between progress lines / metric records
};

struct Config {
  ModelConfig model;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  TrainingConfig training;
  AttentionConfig attention;
  LoggingConfig logging;

  // Parses and validates a whole config. Every key is optional (defaults above) except
  // data.train; unknown keys are errors.
  static Config from_json(const nlohmann::json& j);
  static Config load_file(const std::string& path);  // errors name the file too
  // load_file with --set overrides applied (in order) before validation.
  static Config load_file(const std::string& path, const std::vector<std::string>& overrides);
  // A parsed document with overrides applied, validated; an error names its culprit's source: the
  // --set that gave the offending key, else `source` (a file name, "quickstart config").
  static Config load(nlohmann::json j, const std::vector<std::string>& overrides, const std::string& source);
  // Reads and parses a JSON file without validating it (// and /* */ comments allowed). Throws
  // ConfigError(path, ...) when the file is missing or malformed (with line and column).
  static nlohmann::json load_json_file(const std::string& path);
  nlohmann::json to_json() const;                    // complete: every key, defaults included

  // Applies "a.b.c=value" overrides (value parsed as JSON, falling back to a plain string) to a
  // JSON document before parsing, so overrides pass the same validation.
  static void apply_override(nlohmann::json& j, const std::string& assignment);

  // Derived quantities, valid after validation, for a given data-parallel world size.
  int grad_accum_steps(int world_size = 1) const;
  int global_batch_sequences(int world_size = 1) const;
  // The attention phase active at a (0-based) step; the last phase extends to the end.
  const AttentionPhase& phase_at(int step) const;
  int phase_index_at(int step) const;
};

// Field-by-field equality (phase options compared as JSON values); from_json(c.to_json()) == c.
bool operator==(const Config& a, const Config& b);
bool operator!=(const Config& a, const Config& b);

// The model's parameter count, by arithmetic (ParamLayout lays out exactly this many); a double,
// so that no configuration overflows it.
double parameter_count(const ModelConfig& m);

// How two model sections differ, as "model.<key> <then> -> <now>" entries. Architecture: the keys
// that fix the weights' shapes and what they mean (a checkpoint loads only where none differ).
// Settings: the keys that hold no weights (max_seq_len, rope_theta, norm_eps, init_std), which a
// resume may change, e.g. to move a run to a longer context.
std::vector<std::string> architecture_changes(const ModelConfig& then, const ModelConfig& now);
std::vector<std::string> model_setting_changes(const ModelConfig& then, const ModelConfig& now);

}  // namespace lh
