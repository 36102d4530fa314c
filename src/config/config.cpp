// Config parsing and validation (Config::from_json). to_json, equality, file loading and --set
// overrides live in config_io.cpp; derived quantities (batch arithmetic, phases) in
// config_derived.cpp; the typed, path-tracking JSON reader in json_reader.cpp; the attention
// backend table in attention_options.cpp. docs/config.md documents every rule here.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <fmt/format.h>

#include "config/attention_options.h"
#include "config/json_reader.h"
#include "lighthouse/config.h"

namespace lh {
namespace {
using nlohmann::json;
using config_detail::ObjectReader;

void require(bool ok, const std::string& path, const std::string& reason) {
  if (!ok) throw ConfigError(path, reason);
}

std::string num(double x) { return json(x).dump(); }

std::string one_of(const std::string& value, const std::vector<std::string>& allowed,
                   const std::string& path) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return value;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw ConfigError(path, "must be one of " + list + ", got \"" + value + "\"");
}

// true / false (the original boolean form) or one of the mode names.
Recompute parse_recompute(const json* v, const std::string& path, Recompute def) {
  if (!v) return def;
  if (v->is_boolean()) return v->get<bool>() ? Recompute::kFull : Recompute::kNone;
  if (!v->is_string())
    throw ConfigError(path, "expected \"auto\", \"none\", \"selective\", \"full\" or a boolean, got " + config_detail::describe(*v));
  const std::string name = one_of(config_detail::to_string(*v, path), {"auto", "none", "selective", "full"}, path);
  for (Recompute r : {Recompute::kAuto, Recompute::kNone, Recompute::kSelective, Recompute::kFull})
    if (name == recompute_name(r)) return r;
  throw std::logic_error("parse_recompute: unhandled mode " + name);
}

constexpr int kMaxLayers = 1 << 16;

ModelConfig parse_model(const json& j) {
  ObjectReader r(j, "model");
  ModelConfig m;
  m.dim = r.get_int("dim", m.dim);
  m.n_layers = r.get_int("n_layers", m.n_layers);
  m.n_heads = r.get_int("n_heads", m.n_heads);
  m.n_kv_heads = r.get_int("n_kv_heads", m.n_kv_heads);
  m.ffn_hidden = r.get_int("ffn_hidden", m.ffn_hidden);
  m.vocab_size = r.get_int("vocab_size", m.vocab_size);
  m.rope_theta = r.get_double("rope_theta", m.rope_theta);
  m.norm_eps = r.get_double("norm_eps", m.norm_eps);
  m.max_seq_len = r.get_int("max_seq_len", m.max_seq_len);
  m.tied_embeddings = r.get_bool("tied_embeddings", m.tied_embeddings);
  m.init_std = r.get_double("init_std", m.init_std);
  r.finish();

  const std::pair<const char*, int> positive[] = {
      {"dim", m.dim},           {"n_layers", m.n_layers},     {"n_heads", m.n_heads},
      {"n_kv_heads", m.n_kv_heads}, {"ffn_hidden", m.ffn_hidden}, {"vocab_size", m.vocab_size},
      {"max_seq_len", m.max_seq_len}};
  for (const auto& [key, value] : positive)
    require(value >= 1, r.path_of(key), "must be >= 1, got " + std::to_string(value));
  require(m.dim % m.n_heads == 0, "model.n_heads",
          std::to_string(m.n_heads) + " does not divide model.dim = " + std::to_string(m.dim));
  require(m.head_dim() % 2 == 0, "model.dim",
          "head dim = model.dim / model.n_heads = " + std::to_string(m.head_dim()) +
              " must be even (RoPE rotates pairs of dimensions)");
  require(m.n_kv_heads <= m.n_heads, "model.n_kv_heads",
          std::to_string(m.n_kv_heads) + " must be <= model.n_heads = " + std::to_string(m.n_heads));
  require(m.n_heads % m.n_kv_heads == 0, "model.n_kv_heads",
          std::to_string(m.n_kv_heads) + " does not divide model.n_heads = " +
              std::to_string(m.n_heads) + " (grouped-query attention)");
  require(m.rope_theta > 0, "model.rope_theta", "must be > 0, got " + num(m.rope_theta));
  require(m.norm_eps > 0, "model.norm_eps", "must be > 0, got " + num(m.norm_eps));
  require(m.init_std > 0, "model.init_std", "must be > 0, got " + num(m.init_std));
  // Checked before anything is laid out per layer: a huge n_layers would exhaust host memory
  // building the parameter table (named entries per layer). Every rank holds all parameters and
  // their gradients (at least 10 bytes each), so 2^40 is far past any device; 65,536 layers are
  // some 500 times the deepest Llama.
  require(m.n_layers <= kMaxLayers, r.path_of("n_layers"),
          "must be <= " + std::to_string(kMaxLayers) + ", got " + std::to_string(m.n_layers));
  const double params = parameter_count(m);
  require(params < std::ldexp(1.0, 40), "model",
          fmt::format("{:.3g} parameters (dim {}, n_layers {}, ffn_hidden {}, vocab_size {}): more than 2^40, past "
                      "what any device can hold", params, m.dim, m.n_layers, m.ffn_hidden, m.vocab_size));
  return m;
}

std::vector<std::string> parse_files(ObjectReader& r, const std::string& key, bool required) {
  if (required && r.get_raw(key) == nullptr)
    throw ConfigError(r.path_of(key), "required key missing (a list of shard files, directories "
                                      "or glob patterns)");
  std::vector<std::string> files = r.get_string_list(key, {});
  if (required) require(!files.empty(), r.path_of(key), "must list at least one file or pattern");
  for (size_t i = 0; i < files.size(); ++i)
    require(!files[i].empty(), config_detail::index_path(r.path_of(key), i), "must not be empty");
  return files;
}

DataConfig parse_data(const json& j, const ModelConfig& m) {
  ObjectReader r(j, "data");
  DataConfig d;
  d.train = parse_files(r, "train", true);
  d.val = parse_files(r, "val", false);
  d.seq_len = r.get_int("seq_len", d.seq_len);
  d.micro_batch = r.get_int("micro_batch", d.micro_batch);
  r.finish();
  require(d.seq_len >= 1, "data.seq_len", "must be >= 1, got " + std::to_string(d.seq_len));
  require(d.seq_len <= m.max_seq_len, "data.seq_len",
          std::to_string(d.seq_len) + " exceeds model.max_seq_len = " +
              std::to_string(m.max_seq_len));
  require(d.micro_batch >= 1, "data.micro_batch",
          "must be >= 1, got " + std::to_string(d.micro_batch));
  // Token counts of a micro-batch are ints throughout the model (N = B * T).
  require(int64_t(d.micro_batch) * d.seq_len <= std::numeric_limits<int>::max(), "data.micro_batch",
          std::to_string(d.micro_batch) + " x data.seq_len " + std::to_string(d.seq_len) +
              " tokens per micro-batch exceed " + std::to_string(std::numeric_limits<int>::max()));
  return d;
}

OptimizerConfig parse_optimizer(const json& j) {
  ObjectReader r(j, "optimizer");
  OptimizerConfig o;
  o.lr = r.get_double("lr", o.lr);
  o.beta1 = r.get_double("beta1", o.beta1);
  o.beta2 = r.get_double("beta2", o.beta2);
  o.eps = r.get_double("eps", o.eps);
  o.weight_decay = r.get_double("weight_decay", o.weight_decay);
  o.grad_clip = r.get_double("grad_clip", o.grad_clip);
  r.finish();
  require(o.lr > 0, "optimizer.lr", "must be > 0, got " + num(o.lr));
  require(o.beta1 >= 0 && o.beta1 < 1, "optimizer.beta1", "must be in [0, 1), got " + num(o.beta1));
  require(o.beta2 >= 0 && o.beta2 < 1, "optimizer.beta2", "must be in [0, 1), got " + num(o.beta2));
  require(o.eps > 0, "optimizer.eps", "must be > 0, got " + num(o.eps));
  require(o.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0, got " + num(o.weight_decay));
  require(o.grad_clip >= 0, "optimizer.grad_clip",
          "must be >= 0 (0 disables clipping), got " + num(o.grad_clip));
  return o;
}

ScheduleConfig parse_schedule(const json& j, const OptimizerConfig& o, int steps) {
  ObjectReader r(j, "schedule");
  ScheduleConfig s;
  s.decay = one_of(r.get_string("decay", s.decay), {"constant", "cosine", "linear", "wsd"},
                   "schedule.decay");
  s.warmup_steps = r.get_int("warmup_steps", s.warmup_steps);
  s.min_lr = r.get_double("min_lr", s.min_lr);
  s.decay_fraction = r.get_double("decay_fraction", s.decay_fraction);
  r.finish();
  require(s.warmup_steps >= 0, "schedule.warmup_steps",
          "must be >= 0, got " + std::to_string(s.warmup_steps));
  require(s.warmup_steps < steps, "schedule.warmup_steps",
          std::to_string(s.warmup_steps) + " must be < training.steps = " + std::to_string(steps));
  require(s.min_lr >= 0, "schedule.min_lr", "must be >= 0, got " + num(s.min_lr));
  require(s.min_lr <= o.lr, "schedule.min_lr",
          num(s.min_lr) + " must be <= optimizer.lr = " + num(o.lr));
  require(s.decay_fraction > 0 && s.decay_fraction <= 1, "schedule.decay_fraction",
          "must be in (0, 1], got " + num(s.decay_fraction));
  return s;
}

TrainingConfig parse_training(const json& j, const DataConfig& d) {
  ObjectReader r(j, "training");
  TrainingConfig t;
  t.steps = r.get_int("steps", t.steps);
  t.global_batch = r.get_int("global_batch", t.global_batch);
  t.grad_accum = r.get_int("grad_accum", t.grad_accum);
  t.seed = r.get_uint64("seed", t.seed);
  t.eval_interval = r.get_int("eval_interval", t.eval_interval);
  t.eval_batches = r.get_int("eval_batches", t.eval_batches);
  t.checkpoint_interval = r.get_int("checkpoint_interval", t.checkpoint_interval);
  t.keep_last = r.get_int("keep_last", t.keep_last);
  t.device = one_of(r.get_string("device", t.device), {"auto", "cpu", "cuda"}, "training.device");
  t.recompute = parse_recompute(r.get_raw("recompute"), r.path_of("recompute"), t.recompute);
  t.deterministic = r.get_bool("deterministic", t.deterministic);
  t.attention_backward = one_of(r.get_string("attention_backward", t.attention_backward), {"cudnn", "flash", "auto"},
                                "training.attention_backward");
  t.grad_bucket_mb = r.get_double("grad_bucket_mb", t.grad_bucket_mb);
  r.finish();
  require(t.grad_bucket_mb > 0 && t.grad_bucket_mb <= 65536, r.path_of("grad_bucket_mb"),
          "must be in (0, 65536] MiB, got " + num(t.grad_bucket_mb));
  const auto at_least = [&](const char* key, int value, int lo) {
    require(value >= lo, r.path_of(key),
            "must be >= " + std::to_string(lo) + ", got " + std::to_string(value));
  };
  at_least("steps", t.steps, 1);
  at_least("global_batch", t.global_batch, 0);
  at_least("grad_accum", t.grad_accum, 0);
  at_least("eval_interval", t.eval_interval, 0);
  at_least("eval_batches", t.eval_batches, 1);
  at_least("checkpoint_interval", t.checkpoint_interval, 0);
  at_least("keep_last", t.keep_last, 0);
  // World-size independent parts of the batch arithmetic (the rest is checked by grad_accum_steps).
  const int64_t per_rank = int64_t(d.micro_batch) * std::max(t.grad_accum, 1);
  require(t.global_batch == 0 || t.global_batch % per_rank == 0, "training.global_batch",
          std::to_string(t.global_batch) + " is not a multiple of " +
              (t.grad_accum > 0 ? "training.grad_accum * data.micro_batch = " : "data.micro_batch = ") +
              std::to_string(per_rank));
  return t;
}

AttentionConfig parse_attention(const json& j, int steps, const config_detail::AttentionContext& context) {
  ObjectReader r(j, "attention");
  AttentionConfig a;
  const json* phases = r.get_raw("phases");
  r.finish();
  if (phases == nullptr) return a;
  if (!phases->is_array())
    throw ConfigError("attention.phases", "expected a list of phase objects, got " +
                                              config_detail::describe(*phases));
  for (size_t i = 0; i < phases->size(); ++i) {
    const std::string path = config_detail::index_path("attention.phases", i);
    ObjectReader p((*phases)[i], path);
    if ((*phases)[i].is_null()) throw ConfigError(path, "expected an object, got null");
    AttentionPhase phase;
    if (!p.has("until_step"))
      throw ConfigError(p.path_of("until_step"), "required key missing (the exclusive end step "
                                                 "of this phase)");
    phase.until_step = p.get_int("until_step", 0);
    phase.attention = p.get_string("attention", phase.attention);
    if (const json* options = p.get_raw("options")) phase.options = *options;
    p.finish();
    require(phase.until_step >= 1, p.path_of("until_step"),
            "must be >= 1, got " + std::to_string(phase.until_step));
    if (!a.phases.empty())
      require(phase.until_step > a.phases.back().until_step, p.path_of("until_step"),
              std::to_string(phase.until_step) + " must be greater than the previous phase's "
              "until_step = " + std::to_string(a.phases.back().until_step));
    config_detail::validate_attention_options(phase.attention, phase.options,
                                              p.path_of("attention"), p.path_of("options"), context);
    a.phases.push_back(std::move(phase));
  }
  if (!a.phases.empty())
    require(a.phases.back().until_step >= steps,
            config_detail::index_path("attention.phases", a.phases.size() - 1) + ".until_step",
            "the last phase must cover the whole run: " +
                std::to_string(a.phases.back().until_step) + " < training.steps = " +
                std::to_string(steps));
  return a;
}

LoggingConfig parse_logging(const json& j) {
  ObjectReader r(j, "logging");
  LoggingConfig l;
  l.dir = r.get_string("dir", l.dir);
  l.interval = r.get_int("interval", l.interval);
  r.finish();
  require(!l.dir.empty(), "logging.dir", "must not be empty");
  require(l.interval >= 1, "logging.interval", "must be >= 1, got " + std::to_string(l.interval));
  return l;
}

const json& section(ObjectReader& root, const char* key) {
  static const json kMissing;  // null: the section takes all its defaults
  const json* v = root.get_raw(key);
  return v ? *v : kMissing;
}
}  // namespace

const char* recompute_name(Recompute r) {
  switch (r) {
    case Recompute::kNone: return "none";
    case Recompute::kSelective: return "selective";
    case Recompute::kFull: return "full";
    case Recompute::kAuto: return "auto";
  }
  return "?";
}

Config Config::from_json(const json& j) {
  if (!j.is_object())
    throw ConfigError("(root)", "expected an object, got " + config_detail::describe(j));
  ObjectReader root(j, "");
  const json& jm = section(root, "model");
  const json& jd = section(root, "data");
  const json& jo = section(root, "optimizer");
  const json& js = section(root, "schedule");
  const json& jt = section(root, "training");
  const json& ja = section(root, "attention");
  const json& jl = section(root, "logging");
  root.finish();
  // A section given as null is an error (only an absent one takes the defaults).
  for (const char* key : {"model", "data", "optimizer", "schedule", "training", "attention", "logging"})
    if (j.contains(key) && !j[key].is_object())
      throw ConfigError(key, "expected an object, got " + config_detail::describe(j[key]));

  Config c;
  c.model = parse_model(jm);
  c.data = parse_data(jd, c.model);
  c.optimizer = parse_optimizer(jo);
  c.training = parse_training(jt, c.data);
  c.schedule = parse_schedule(js, c.optimizer, c.training.steps);
  c.attention = parse_attention(ja, c.training.steps, {c.data.seq_len, c.model.n_layers});
  c.logging = parse_logging(jl);
  return c;
}

}  // namespace lh
