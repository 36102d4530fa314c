#include "lighthouse/export.h"

#include <algorithm>

#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "lighthouse/checkpoint.h"
#include "lighthouse/checkpoint_dir.h"
#include "lighthouse/data/shard.h"
#include "lighthouse/host_io.h"
#include "lighthouse/model.h"
#include "lighthouse/safetensors.h"

namespace lh {
namespace fs = std::filesystem;
namespace {

// One exported tensor: rows [row_begin, row_begin + rows) of a [*, cols] parameter.
struct Piece {
  std::string hf_name, param;
  int64_t row_begin, rows, cols;
};

std::vector<Piece> hf_pieces(const ModelConfig& m) {
  const int64_t C = m.dim, F = m.ffn_hidden, q = m.q_dim(), kv = m.kv_dim();
  std::vector<Piece> p;
  p.push_back({"model.embed_tokens.weight", "embed", 0, m.vocab_size, C});
  for (int l = 0; l < m.n_layers; ++l) {
    const std::string ours = "layers." + std::to_string(l) + ".";
    const std::string hf = "model.layers." + std::to_string(l) + ".";
    p.push_back({hf + "input_layernorm.weight", ours + "attn_norm", 0, 1, C});
    p.push_back({hf + "self_attn.q_proj.weight", ours + "wqkv", 0, q, C});
    p.push_back({hf + "self_attn.k_proj.weight", ours + "wqkv", q, kv, C});
    p.push_back({hf + "self_attn.v_proj.weight", ours + "wqkv", q + kv, kv, C});
    p.push_back({hf + "self_attn.o_proj.weight", ours + "wo", 0, C, q});
    p.push_back({hf + "post_attention_layernorm.weight", ours + "mlp_norm", 0, 1, C});
    p.push_back({hf + "mlp.gate_proj.weight", ours + "w_gate_up", 0, F, C});
    p.push_back({hf + "mlp.up_proj.weight", ours + "w_gate_up", F, F, C});
    p.push_back({hf + "mlp.down_proj.weight", ours + "w_down", 0, C, F});
  }
  p.push_back({"model.norm.weight", "final_norm", 0, 1, C});
  if (!m.tied_embeddings) p.push_back({"lm_head.weight", "lm_head", 0, m.vocab_size, C});
  return p;
}

}  // namespace

nlohmann::json hf_llama_config(const ModelConfig& m, DType dtype) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", m.dim},
          {"intermediate_size", m.ffn_hidden},
          {"num_hidden_layers", m.n_layers},
          {"num_attention_heads", m.n_heads},
          {"num_key_value_heads", m.n_kv_heads},
          {"head_dim", m.head_dim()},
          {"vocab_size", m.vocab_size},
          {"max_position_embeddings", m.max_seq_len},
          {"rms_norm_eps", m.norm_eps},
          {"rope_theta", m.rope_theta},
          {"rope_scaling", nullptr},
          {"tie_word_embeddings", m.tied_embeddings},
          {"hidden_act", "silu"},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"attention_dropout", 0.0},
          {"initializer_range", m.init_std},
          {"pretraining_tp", 1},
          // The byte vocabulary's end-of-document id; a smaller vocabulary has none.
          {"eos_token_id",
           m.vocab_size > data::kEndOfDocument ? nlohmann::json(data::kEndOfDocument) : nlohmann::json()},
          {"torch_dtype", dtype == DType::BF16 ? "bfloat16" : "float32"},
          {"use_cache", true}};
}

namespace {
// The export writes only these names (the partial one while it writes the weights, and a
// temporary of config.json): a directory holding anything else (a checkpoint, a run directory,
// someone's files) is not overwritten.
constexpr const char* kConfigName = "config.json";
constexpr const char* kWeightsName = "model.safetensors";
constexpr const char* kPartialWeightsName = ".model.safetensors.tmp";
const char* const kExportFiles[] = {kConfigName, kWeightsName, kPartialWeightsName};

void check_export_dir(const std::string& out_dir) {
  std::error_code ec;
  if (!fs::exists(out_dir, ec)) return;
  if (!fs::is_directory(out_dir, ec)) throw std::runtime_error("export --out " + out_dir + ": not a directory");
  // write_file_atomic's temporaries of config.json, left by an export that was killed.
  const std::string config_temporary = ckpt::temporary_prefix() + kConfigName;
  for (const auto& e : fs::directory_iterator(out_dir)) {
    const std::string name = e.path().filename().string();
    if (std::find(std::begin(kExportFiles), std::end(kExportFiles), name) == std::end(kExportFiles) &&
        name.rfind(config_temporary, 0) != 0)
      throw std::runtime_error("export --out " + out_dir + ": holds " + name +
                               ", so it is not an earlier export; give a new or empty directory");
  }
}
}  // namespace

void export_hf(const std::string& checkpoint_dir, const std::string& out_dir, DType dtype) {
  if (dtype != DType::F32 && dtype != DType::BF16)
    throw std::invalid_argument(std::string("export dtype must be F32 or BF16, got ") + dtype_name(dtype));
  check_export_dir(out_dir);
  const CheckpointInfo info = read_checkpoint_info(checkpoint_dir);
  auto backend = make_cpu_backend(DType::F32);
  LlamaModel model(info.config.model, *backend);
  load_checkpoint_weights(checkpoint_dir, model);
  std::vector<float> weights(model.layout().total());
  backend->copy_to_host(weights.data(), model.params());

  const std::vector<Piece> pieces = hf_pieces(info.config.model);
  std::vector<uint16_t> bf16;
  if (dtype == DType::BF16) {
    bf16.resize(weights.size());
    for (size_t i = 0; i < weights.size(); ++i) bf16[i] = float_to_bf16(weights[i]);
  }
  std::vector<safetensors::TensorRef> refs;
  for (const Piece& p : pieces) {
    const ParamEntry& e = model.layout().at(p.param);
    const size_t first = e.offset + size_t(p.row_begin) * size_t(p.cols);
    const void* data = dtype == DType::BF16 ? static_cast<const void*>(bf16.data() + first) : weights.data() + first;
    std::vector<int64_t> shape = p.rows == 1 && e.shape.size() == 1 ? std::vector<int64_t>{p.cols}
                                                                      : std::vector<int64_t>{p.rows, p.cols};
    refs.push_back({p.hf_name, dtype, shape, data});
  }
  fs::create_directories(out_dir);
  const std::string tmp = (fs::path(out_dir) / kPartialWeightsName).string();
  safetensors::write_file(tmp, refs, {{"format", "pt"}});
  fs::rename(tmp, fs::path(out_dir) / kWeightsName);
  ckpt::write_file_atomic((fs::path(out_dir) / kConfigName).string(),
                          hf_llama_config(info.config.model, dtype).dump(2) + "\n");
}

}  // namespace lh
