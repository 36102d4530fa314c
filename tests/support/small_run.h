// A small training setup shared by the CPU and GPU trainer tests: toy-language data in a
// directory, a config that trains a 2-layer model on it, and readers for what a run leaves.
#pragma once
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lighthouse/config.h"
#include "lighthouse/data.h"

namespace lh::testing {

inline Config small_run(const std::filesystem::path& dir, int steps, const std::string& device = "cpu") {
  namespace fs = std::filesystem;
  data::SyntheticOptions o;
  o.task = data::SyntheticTask::Toy;
  o.length = 33;
  o.train_samples = 200;
  o.val_samples = 16;
  o.seed = 3;
  data::generate_synthetic(o, (dir / "data").string());
  nlohmann::json j = {
      {"model", {{"dim", 32}, {"n_layers", 2}, {"n_heads", 4}, {"n_kv_heads", 2}, {"ffn_hidden", 64},
                 {"max_seq_len", 32}}},
      {"data", {{"train", {(dir / "data" / "train_*.bin").string()}}, {"val", {(dir / "data" / "val_*.bin").string()}},
                {"seq_len", 32}, {"micro_batch", 4}}},
      {"optimizer", {{"lr", 3e-3}}},
      {"schedule", {{"decay", "cosine"}, {"warmup_steps", 2}, {"min_lr", 1e-4}}},
      {"training", {{"steps", steps}, {"grad_accum", 2}, {"eval_interval", 5}, {"eval_batches", 2},
                    {"checkpoint_interval", 5}, {"keep_last", 0}, {"device", device}}},
      {"logging", {{"dir", (dir / "run").string()}, {"interval", 1}}}};
  return Config::from_json(j);
}

// Two layers (layer 0 stays dense), seq_len 256: the smallest shape with a 128-entry tile at L=2.
// Lighthouse (L=2, p=2, k=128) until `boundary`, dense after it.
inline Config phased_run(const std::filesystem::path& dir, int steps, int boundary, const std::string& device = "cpu") {
  data::SyntheticOptions o;
  o.task = data::SyntheticTask::Toy;
  o.length = 257;
  o.train_samples = 40;
  o.val_samples = 4;
  o.seed = 5;
  data::generate_synthetic(o, (dir / "data").string());
  const nlohmann::json options = {{"levels", 2}, {"pooling", 2}, {"topk", 128}, {"dense_layers", {0}}};
  nlohmann::json j = {
      {"model", {{"dim", 32}, {"n_layers", 2}, {"n_heads", 4}, {"n_kv_heads", 2}, {"ffn_hidden", 64},
                 {"max_seq_len", 256}}},
      {"data", {{"train", {(dir / "data" / "train_*.bin").string()}}, {"val", {(dir / "data" / "val_*.bin").string()}},
                {"seq_len", 256}, {"micro_batch", 2}}},
      {"optimizer", {{"lr", 3e-3}}},
      {"training", {{"steps", steps}, {"grad_accum", 1}, {"eval_interval", 2}, {"eval_batches", 1},
                    {"checkpoint_interval", 2}, {"keep_last", 0}, {"device", device}}},
      {"attention", {{"phases", {{{"until_step", boundary}, {"attention", "lighthouse"}, {"options", options}},
                                 {{"until_step", steps}, {"attention", "dense"}}}}}},
      {"logging", {{"dir", (dir / "run").string()}, {"interval", 1}}}};
  return Config::from_json(j);
}

// The training losses recorded in a metrics file, in order.
inline std::vector<double> losses_in(const std::filesystem::path& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

inline std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace lh::testing
