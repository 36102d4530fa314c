#include "lighthouse/checkpoint.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "lighthouse/checkpoint_dir.h"
#include "lighthouse/checksum.h"
#include "lighthouse/provenance.h"
#include "lighthouse/safetensors.h"

namespace lh {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "lighthouse-checkpoint";
constexpr int kFormatVersion = 1;
constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFile = "state.json";

// A host copy of a whole allocation, as raw bytes.
std::vector<char> to_host(Backend& be, const Tensor& t) {
  std::vector<char> bytes(t.bytes());
  be.copy_to_host(bytes.data(), t);
  return bytes;
}

std::vector<safetensors::TensorRef> tensor_refs(const ParamLayout& layout, DType dtype, const char* data,
                                                const std::string& prefix) {
  std::vector<safetensors::TensorRef> refs;
  for (const ParamEntry& e : layout.entries())
    refs.push_back({prefix + e.name, dtype, e.shape, data + e.offset * dtype_size(dtype)});
  return refs;
}

nlohmann::json state_to_json(const TrainState& s) {
  return {{"step", s.step},
          {"phase_index", s.phase_index},
          {"attention", s.attention},
          {"loader", {{"epoch", s.loader.epoch}, {"cursor", s.loader.cursor}}},
          // Nothing reads this any more (a trainer RNG nothing drew from); written so that builds
          // before 2026-11-30, which require the key, still load these checkpoints.
          {"rng", std::string(64, '0')},
          {"world_size", s.world_size},
          {"tokens_seen", s.tokens_seen}};
}

TrainState state_from_json(const nlohmann::json& j) {
  TrainState s;
  auto get_int = [&](const char* key) {  // get<int>() would wrap 4294967297 to 1
    const int64_t v = j.at(key).get<int64_t>();
    if (v < INT_MIN || v > INT_MAX) throw std::invalid_argument(std::string(key) + " " + std::to_string(v) + " is out of range");
    return int(v);
  };
  s.step = get_int("step");
  s.phase_index = get_int("phase_index");
  s.attention = j.at("attention").get<std::string>();
  auto get_count = [&](const char* key) {  // get<uint64_t>() would wrap -1 to 2^64 - 1
    const nlohmann::json& v = j.at("loader").at(key);
    if (!v.is_number_unsigned())
      throw std::invalid_argument(std::string("loader.") + key + " must be a whole number >= 0, got " + v.dump());
    return v.get<uint64_t>();
  };
  s.loader.epoch = get_count("epoch");
  s.loader.cursor = get_count("cursor");
  // "rng" is ignored (see state_to_json).
  s.world_size = get_int("world_size");
  s.tokens_seen = j.at("tokens_seen").get<double>();
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  require(s.step >= 0, "step must be >= 0, got " + std::to_string(s.step));
  require(s.phase_index >= 0, "phase_index must be >= 0, got " + std::to_string(s.phase_index));
  require(s.world_size >= 1, "world_size must be >= 1, got " + std::to_string(s.world_size));
  require(std::isfinite(s.tokens_seen) && s.tokens_seen >= 0, "tokens_seen must be a finite number >= 0");
  return s;
}

// Reads every tensor named by the layout (with prefix) into a host byte buffer laid out like the
// flat allocation; throws on any missing name or dtype/shape mismatch.
std::vector<char> read_all(const safetensors::File& file, const ParamLayout& layout, DType dtype,
                           const std::string& prefix) {
  std::vector<char> bytes(layout.total() * dtype_size(dtype));
  for (const ParamEntry& e : layout.entries())
    file.read(prefix + e.name, dtype, e.shape, bytes.data() + e.offset * dtype_size(dtype));
  const size_t expected = layout.entries().size();
  if (file.names().size() != expected)
    throw CheckpointError(file.path() + ": holds " + std::to_string(file.names().size()) + " tensors, the model has " +
                          std::to_string(expected));
  return bytes;
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, const Config& config, const LlamaModel& model,
                            const AdamW& optimizer, const TrainState& state) {
  if (!optimizer.whole_layout())
    throw std::logic_error("save_checkpoint: a sharded optimizer must pass its gathered moments");
  return save_checkpoint(run_dir, config, model, OptimizerMoments{optimizer.m(), optimizer.v(), optimizer.steps_taken()},
                         state);
}

std::string save_checkpoint(const std::string& run_dir, const Config& config, const LlamaModel& model,
                            const OptimizerMoments& optimizer, const TrainState& state) {
  Backend& be = model.backend();
  const DType dt = be.param_dtype();
  fs::create_directories(run_dir);
  const std::string final_path = (fs::path(run_dir) / ckpt::checkpoint_name(state.step)).string();
  ckpt::StagedDir staged(final_path);
  const fs::path dir(staged.path());

  const std::vector<char> weights = to_host(be, model.params());
  safetensors::write_file((dir / kModelFile).string(), tensor_refs(model.layout(), dt, weights.data(), ""),
                          {{"format", kFormat}});
  const size_t total = model.layout().total();
  std::vector<char> m = to_host(be, optimizer.m.slice(0, total)), v = to_host(be, optimizer.v.slice(0, total));
  auto refs = tensor_refs(model.layout(), dt, m.data(), "m.");
  for (auto& r : tensor_refs(model.layout(), dt, v.data(), "v.")) refs.push_back(std::move(r));
  safetensors::write_file((dir / kOptimizerFile).string(), refs, {{"format", kFormat}});

  nlohmann::json j = {{"format", kFormat}, {"version", kFormatVersion}};
  j["state"] = state_to_json(state);
  j["optimizer_steps"] = optimizer.steps;
  j["dtype"] = dtype_name(dt);
  j["config"] = config.to_json();
  j["provenance"] = provenance(be);
  for (const char* f : {kModelFile, kOptimizerFile})
    j["checksums"][f] = checksum_hex(checksum_file((dir / f).string()));
  ckpt::write_file_atomic((dir / kStateFile).string(), j.dump(2) + "\n");
  staged.commit();
  ckpt::prune_checkpoints(run_dir, config.training.keep_last);
  return final_path;
}

namespace {
// state.json of a checkpoint, checked, with what it says (read once: the loader verifies the files
// against the same checksums that were checked here).
struct StateFile {
  CheckpointInfo info;
  std::string dtype;
  nlohmann::json checksums, optimizer_steps;
};

StateFile read_state_file(const std::string& dir) {
  const std::string state_path = (fs::path(dir) / kStateFile).string();
  std::ifstream in(state_path);
  if (!in) {
    if (const auto newest = fs::is_directory(dir) ? ckpt::newest_checkpoint(dir) : std::nullopt)  // a run directory
      throw CheckpointError(dir + ": a run directory, not a checkpoint; its newest checkpoint is " + *newest);
    throw CheckpointError(dir + ": not a checkpoint (no readable " + kStateFile + ")");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw CheckpointError(state_path + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("format") || j["format"] != kFormat)
    throw CheckpointError(state_path + ": not a lighthouse checkpoint state (format key missing or wrong)");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"] != kFormatVersion)
    throw CheckpointError(state_path + ": checkpoint format version " + j.value("version", nlohmann::json()).dump() +
                          " is not supported (expected " + std::to_string(kFormatVersion) + ")");
  StateFile file;
  CheckpointInfo& info = file.info;
  info.path = dir;
  try {
    info.state = state_from_json(j.at("state"));
    info.config = Config::from_json(j.at("config"));
    const size_t phases = std::max<size_t>(1, info.config.attention.phases.size());
    if (size_t(info.state.phase_index) >= phases)
      throw std::invalid_argument("phase_index " + std::to_string(info.state.phase_index) + " but the config has " +
                                  std::to_string(phases) + " attention phase(s)");
    if (!j.contains("checksums") || !j.at("checksums").is_object()) throw std::invalid_argument("no checksums");
    file.checksums = j.at("checksums");
    file.dtype = j.value("dtype", std::string("?"));
    file.optimizer_steps = j.value("optimizer_steps", nlohmann::json());
    info.provenance = j.value("provenance", nlohmann::json());
  } catch (const ConfigError& e) {
    throw CheckpointError(state_path + ": stored config is invalid: " + e.what());
  } catch (const std::exception& e) {
    throw CheckpointError(state_path + ": malformed state (" + e.what() + ")");
  }
  return file;
}
}  // namespace

CheckpointInfo read_checkpoint_info(const std::string& dir) { return read_state_file(dir).info; }

CheckpointInfo load_checkpoint_weights(const std::string& dir, LlamaModel& model) {
  return load_checkpoint(dir, model, static_cast<OptimizerMoments*>(nullptr));
}

CheckpointInfo load_checkpoint(const std::string& dir, LlamaModel& model, AdamW* optimizer) {
  if (!optimizer) return load_checkpoint_weights(dir, model);
  if (!optimizer->whole_layout())
    throw std::logic_error("load_checkpoint: a sharded optimizer must load through whole-layout moments");
  OptimizerMoments moments{optimizer->m(), optimizer->v(), 0};
  CheckpointInfo info = load_checkpoint(dir, model, &moments);
  optimizer->set_steps_taken(moments.steps);
  return info;
}

CheckpointInfo load_checkpoint(const std::string& dir, LlamaModel& model, OptimizerMoments* optimizer) {
  const StateFile state = read_state_file(dir);
  const CheckpointInfo& info = state.info;
  const fs::path root(dir);
  if (const std::vector<std::string> changed = architecture_changes(info.config.model, model.config()); !changed.empty())
    throw CheckpointError(dir + ": the checkpoint holds another architecture than the config's (" +
                          fmt::format("{}", fmt::join(changed, ", ")) + ")");
  Backend& be = model.backend();
  if (state.dtype != dtype_name(be.param_dtype()))
    throw CheckpointError(dir + ": stored as " + state.dtype + ", the backend works in " + dtype_name(be.param_dtype()));
  try {
    std::vector<const char*> files = {kModelFile};
    if (optimizer) files.push_back(kOptimizerFile);
    for (const char* f : files) {
      const std::string path = (root / f).string();
      const std::string want = state.checksums.at(f).get<std::string>();
      const std::string got = checksum_hex(checksum_file(path));
      if (want != got)
        throw CheckpointError(path + ": checksum mismatch (file is damaged): expected " + want + ", got " + got,
                              /*damaged=*/true);
    }
    const auto weights = read_all(safetensors::File::open((root / kModelFile).string()), model.layout(), be.param_dtype(), "");
    std::vector<char> m, v;
    if (optimizer) {
      const auto file = safetensors::File::open((root / kOptimizerFile).string());
      if (file.names().size() != 2 * model.layout().entries().size())
        throw CheckpointError(file.path() + ": expected " + std::to_string(2 * model.layout().entries().size()) +
                              " moment tensors, found " + std::to_string(file.names().size()));
      m.resize(model.layout().total() * dtype_size(be.param_dtype()));
      v.resize(m.size());
      for (const ParamEntry& e : model.layout().entries()) {
        file.read("m." + e.name, be.param_dtype(), e.shape, m.data() + e.offset * dtype_size(be.param_dtype()));
        file.read("v." + e.name, be.param_dtype(), e.shape, v.data() + e.offset * dtype_size(be.param_dtype()));
      }
    }
    int optimizer_steps = 0;
    if (optimizer) {
      const nlohmann::json& steps = state.optimizer_steps;
      if (!steps.is_number_unsigned() || steps.get<uint64_t>() > uint64_t(INT_MAX))
        throw CheckpointError(dir + ": optimizer_steps must be a whole number in [0, " + std::to_string(INT_MAX) +
                              "], got " + steps.dump());
      optimizer_steps = steps.get<int>();
    }
    // Everything verified: only now touch the live state.
    be.copy_from_host(model.params(), weights.data());
    model.sync_compute_weights();
    if (optimizer) {
      const size_t total = model.layout().total();
      be.copy_from_host(optimizer->m.slice(0, total), m.data());
      be.copy_from_host(optimizer->v.slice(0, total), v.data());
      optimizer->steps = optimizer_steps;
    }
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw CheckpointError(dir + ": cannot load: " + e.what(), /*damaged=*/true);
  }
  return info;
}

}  // namespace lh
