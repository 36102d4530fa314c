#include "cudnn_engine_choice.h"

#include <cstdlib>
#include <stdexcept>

namespace lh::cuda {
namespace {

// Upper bound on knobs per engine: one per knob type.
constexpr int64_t kMaxKnobs = CUDNN_KNOB_TYPE_COUNTS;

const char* env(const std::string& name) { return std::getenv(name.c_str()); }

}  // namespace

int64_t parse_int(const std::string& text, const std::string& variable) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size())
    throw std::invalid_argument(variable + ": '" + text + "' is not an integer");
  return v;
}

namespace {

// "type:value,type:value"
KnobChoices parse_knobs(const std::string& text, const std::string& variable) {
  KnobChoices out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    const size_t colon = item.find(':');
    if (colon == std::string::npos)
      throw std::invalid_argument(variable + ": '" + item + "' is not of the form knob_type:value");
    out.emplace_back(parse_int(item.substr(0, colon), variable), parse_int(item.substr(colon + 1), variable));
    start = end + 1;
  }
  return out;
}

// Fills `n` fresh descriptors of `type` from a descriptor-array attribute; returns how many were set.
int64_t get_descriptors(cudnnBackendDescriptor_t from, cudnnBackendAttributeName_t attr,
                        cudnnBackendDescriptorType_t type, std::deque<CudnnDesc>& out, int64_t n) {
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < n; ++i) raw.push_back(out.emplace_back(type).get());
  int64_t filled = 0;
  LH_CUDNN_CHECK(cudnnBackendGetAttribute(from, attr, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, &filled, raw.data()));
  return filled;
}

int64_t get_int64(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t attr) {
  int64_t v = 0, n = 0;
  LH_CUDNN_CHECK(cudnnBackendGetAttribute(d, attr, CUDNN_TYPE_INT64, 1, &n, &v));
  return v;
}

int64_t get_knob_type(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t attr) {
  cudnnBackendKnobType_t t{};
  int64_t n = 0;
  LH_CUDNN_CHECK(cudnnBackendGetAttribute(d, attr, CUDNN_TYPE_KNOB_TYPE, 1, &n, &t));
  return int64_t(t);
}

}  // namespace

EngineChoiceOptions engine_choice_from_env(const std::string& name) {
  EngineChoiceOptions o;
  if (const char* m = env("LH_CUDNN_HEUR_MODE")) {
    const std::string mode = m;
    if (mode == "A") o.mode = CUDNN_HEUR_MODE_A;
    else if (mode == "B") o.mode = CUDNN_HEUR_MODE_B;
    else if (mode == "FALLBACK") o.mode = CUDNN_HEUR_MODE_FALLBACK;
    else throw std::invalid_argument("LH_CUDNN_HEUR_MODE: '" + mode + "' is not A, B or FALLBACK");
  }
  const std::string config_var = "LH_CUDNN_" + name + "_CONFIG", knobs_var = "LH_CUDNN_" + name + "_KNOBS";
  if (const char* c = env(config_var)) o.config_index = parse_int(c, config_var);
  if (o.config_index < 0) throw std::invalid_argument(config_var + " must be >= 0");
  if (const char* k = env(knobs_var)) o.knob_overrides = parse_knobs(k, knobs_var);
  o.verbose = env("LH_CUDNN_VERBOSE") != nullptr;
  return o;
}

int64_t engine_global_index(cudnnBackendDescriptor_t engine_config) {
  std::deque<CudnnDesc> engine;
  get_descriptors(engine_config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_BACKEND_ENGINE_DESCRIPTOR, engine, 1);
  return get_int64(engine.front().get(), CUDNN_ATTR_ENGINE_GLOBAL_INDEX);
}

KnobChoices knob_choices(cudnnBackendDescriptor_t engine_config) {
  std::deque<CudnnDesc> choices;
  const int64_t n = get_descriptors(engine_config, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES,
                                    CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR, choices, kMaxKnobs);
  KnobChoices out;
  for (int64_t i = 0; i < n; ++i)
    out.emplace_back(get_knob_type(choices[i].get(), CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE),
                     get_int64(choices[i].get(), CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE));
  return out;
}

std::string describe_engine_config(cudnnBackendDescriptor_t engine_config) {
  std::deque<CudnnDesc> engine;
  get_descriptors(engine_config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_BACKEND_ENGINE_DESCRIPTOR, engine, 1);
  std::string s = "engine " + std::to_string(get_int64(engine.front().get(), CUDNN_ATTR_ENGINE_GLOBAL_INDEX)) +
                  ", knobs {";
  for (const auto& [type, value] : knob_choices(engine_config))
    s += " " + std::to_string(type) + ":" + std::to_string(value);
  s += " }, ranges {";
  std::deque<CudnnDesc> infos;
  const int64_t n =
      get_descriptors(engine.front().get(), CUDNN_ATTR_ENGINE_KNOB_INFO, CUDNN_BACKEND_KNOB_INFO_DESCRIPTOR,
                      infos, kMaxKnobs);
  for (int64_t i = 0; i < n; ++i) {
    const cudnnBackendDescriptor_t d = infos[i].get();
    s += " " + std::to_string(get_knob_type(d, CUDNN_ATTR_KNOB_INFO_TYPE)) + ":[" +
         std::to_string(get_int64(d, CUDNN_ATTR_KNOB_INFO_MINIMUM_VALUE)) + "," +
         std::to_string(get_int64(d, CUDNN_ATTR_KNOB_INFO_MAXIMUM_VALUE)) + "]/" +
         std::to_string(get_int64(d, CUDNN_ATTR_KNOB_INFO_STRIDE));
  }
  return s + " }";
}

CudnnDesc& make_engine_config(cudnnBackendDescriptor_t graph, cudnnBackendDescriptor_t base,
                              const KnobChoices& overrides, std::deque<CudnnDesc>& keep_alive) {
  KnobChoices knobs = knob_choices(base);
  for (const auto& [type, value] : overrides) {
    bool replaced = false;
    for (auto& k : knobs)
      if (k.first == type) k.second = value, replaced = true;
    if (!replaced) knobs.emplace_back(type, value);
  }
  const int64_t index = engine_global_index(base);
  CudnnDesc& engine = keep_alive.emplace_back(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  engine.set(CUDNN_ATTR_ENGINE_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph)
      .set_int64(CUDNN_ATTR_ENGINE_GLOBAL_INDEX, index)
      .finalize();
  std::vector<cudnnBackendDescriptor_t> raw;
  for (const auto& [type, value] : knobs) {
    const auto t = cudnnBackendKnobType_t(type);
    CudnnDesc& c = keep_alive.emplace_back(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR);
    c.set(CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, 1, &t)
        .set_int64(CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, value)
        .finalize();
    raw.push_back(c.get());
  }
  CudnnDesc& config = keep_alive.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
  config.set_desc(CUDNN_ATTR_ENGINECFG_ENGINE, engine);
  if (!raw.empty()) config.set(CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, CUDNN_TYPE_BACKEND_DESCRIPTOR, int64_t(raw.size()), raw.data());
  return config.finalize();
}

}  // namespace lh::cuda
