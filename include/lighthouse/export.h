// Export of a checkpoint as a Hugging Face Llama model directory (config.json + model.safetensors)
// that transformers' LlamaForCausalLM loads directly: the fused qkv and gate/up projections are
// split into q/k/v_proj and gate/up_proj, names follow transformers, and since our RoPE already
// uses transformers' rotate-half convention the projections need no permutation.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "lighthouse/config.h"
#include "lighthouse/tensor.h"

namespace lh {

// The transformers LlamaConfig for a model.
nlohmann::json hf_llama_config(const ModelConfig& model, DType dtype);

// Verifies and loads the checkpoint, then writes out_dir/config.json and out_dir/model.safetensors
// in dtype F32 or BF16 (round to nearest even). Files are written atomically. out_dir must be new,
// empty or an earlier export (holding only those files): anything else is refused, before any
// work, with std::runtime_error naming what it holds.
void export_hf(const std::string& checkpoint_dir, const std::string& out_dir, DType dtype);

}  // namespace lh
