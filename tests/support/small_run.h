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
