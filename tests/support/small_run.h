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

// Toy-language shards in `dir`: samples of `length` tokens (= seq_len + 1).
inline void toy_data(const std::filesystem::path& dir, int length, uint64_t train, uint64_t val, uint64_t seed) {
  data::SyntheticOptions o;
  o.task = data::SyntheticTask::Toy;
  o.length = length;
  o.train_samples = train;
  o.val_samples = val;
  o.seed = seed;
  data::generate_synthetic(o, dir.string());
}

inline Config small_run(const std::filesystem::path& dir, int steps, const std::string& device = "cpu") {
  toy_data(dir / "data", /*length=*/33, /*train=*/200, /*val=*/16, /*seed=*/3);
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
  toy_data(dir / "data", /*length=*/257, /*train=*/40, /*val=*/4, /*seed=*/5);
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
// The `key` field of every metrics record that has one, in order ("loss", "grad_norm", ...).
inline std::vector<double> values_in(const std::filesystem::path& metrics, const std::string& key) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains(key)) out.push_back(j[key].get<double>());
  }
  return out;
}
inline std::vector<double> losses_in(const std::filesystem::path& metrics) { return values_in(metrics, "loss"); }

inline std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace lh::testing
