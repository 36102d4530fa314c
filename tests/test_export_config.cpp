// The Hugging Face config.json an export writes: each key from the model config it stands for.
#include <catch2/catch.hpp>

#include "lighthouse/config.h"
#include "lighthouse/export.h"

TEST_CASE("export config: Llama keys follow the model config, eos only where the vocabulary has it", "[cpu]") {
  lh::ModelConfig m;
  m.dim = 512, m.n_layers = 3, m.n_heads = 8, m.n_kv_heads = 2, m.ffn_hidden = 1536, m.vocab_size = 257;
  m.max_seq_len = 4096, m.rope_theta = 500000.0, m.norm_eps = 1e-6, m.tied_embeddings = true;
  const nlohmann::json c = lh::hf_llama_config(m, lh::DType::BF16);
  CHECK(c["hidden_size"] == 512);
  CHECK(c["num_hidden_layers"] == 3);
  CHECK(c["num_attention_heads"] == 8);
  CHECK(c["num_key_value_heads"] == 2);
  CHECK(c["head_dim"] == 64);
  CHECK(c["intermediate_size"] == 1536);
  CHECK(c["max_position_embeddings"] == 4096);
  CHECK(c["rope_theta"] == 500000.0);
  CHECK(c["rms_norm_eps"] == 1e-6);
  CHECK(c["tie_word_embeddings"] == true);
  CHECK(c["torch_dtype"] == "bfloat16");
  CHECK(c["eos_token_id"] == 256);  // the byte vocabulary's end of document
  m.vocab_size = 100;               // no such token: no eos rather than an id outside the vocabulary
  CHECK(lh::hf_llama_config(m, lh::DType::F32)["eos_token_id"].is_null());
}
