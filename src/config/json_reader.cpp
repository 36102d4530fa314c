#include "config/json_reader.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "lighthouse/config.h"

namespace lh::config_detail {
namespace {
using nlohmann::json;

// Levenshtein distance, for "did you mean" hints on misspelt keys.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

[[noreturn]] void type_error(const std::string& path, const char* expected, const json& v) {
  throw ConfigError(path, std::string("expected ") + expected + ", got " + describe(v));
}
}  // namespace

std::string describe(const json& v) {
  if (v.is_null()) return "null";  // its type name is its text
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return std::string(v.is_number() ? "number" : v.type_name()) + " " + text;
}

std::string join_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string index_path(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

int64_t to_int64(const json& v, const std::string& path) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw ConfigError(path, "integer " + v.dump() + " is out of range");
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) type_error(path, "an integer", v);
    if (std::fabs(d) >= 9.2e18) throw ConfigError(path, "integer " + v.dump() + " is out of range");
    return static_cast<int64_t>(d);
  }
  type_error(path, "an integer", v);
}

int to_int(const json& v, const std::string& path) {
  const int64_t x = to_int64(v, path);
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
    throw ConfigError(path, std::to_string(x) + " does not fit in a 32-bit integer");
  return static_cast<int>(x);
}

uint64_t to_uint64(const json& v, const std::string& path) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const auto x = v.get<int64_t>();
    if (x < 0) throw ConfigError(path, "must be a non-negative integer, got " + v.dump());
    return static_cast<uint64_t>(x);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) type_error(path, "a non-negative integer", v);
    if (d < 0) throw ConfigError(path, "must be a non-negative integer, got " + v.dump());
    if (d >= 18446744073709551616.0) throw ConfigError(path, "integer " + v.dump() + " is out of range");
    return static_cast<uint64_t>(d);
  }
  type_error(path, "a non-negative integer", v);
}

double to_double(const json& v, const std::string& path) {
  if (!v.is_number()) type_error(path, "a number", v);
  const double d = v.get<double>();
  if (!std::isfinite(d)) throw ConfigError(path, "must be a finite number, got " + v.dump());
  return d;
}

bool to_bool(const json& v, const std::string& path) {
  if (!v.is_boolean()) type_error(path, "a boolean (true or false)", v);
  return v.get<bool>();
}

std::string to_string(const json& v, const std::string& path) {
  if (!v.is_string()) type_error(path, "a string", v);
  return v.get<std::string>();
}

ObjectReader::ObjectReader(const json& j, std::string path) : obj_(&j), path_(std::move(path)) {
  if (j.is_null()) {
    obj_ = nullptr;
  } else if (!j.is_object()) {
    type_error(path_.empty() ? std::string("(root)") : path_, "an object", j);
  }
}

bool ObjectReader::has(const std::string& key) const {
  return obj_ != nullptr && obj_->contains(key);
}

const json* ObjectReader::find(const std::string& key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.push_back(key);
  if (obj_ == nullptr) return nullptr;
  const auto it = obj_->find(key);
  return it == obj_->end() ? nullptr : &*it;
}

const json* ObjectReader::get_raw(const std::string& key) { return find(key); }

int ObjectReader::get_int(const std::string& key, int def) {
  const json* v = find(key);
  return v ? to_int(*v, path_of(key)) : def;
}

uint64_t ObjectReader::get_uint64(const std::string& key, uint64_t def) {
  const json* v = find(key);
  return v ? to_uint64(*v, path_of(key)) : def;
}

double ObjectReader::get_double(const std::string& key, double def) {
  const json* v = find(key);
  return v ? to_double(*v, path_of(key)) : def;
}

bool ObjectReader::get_bool(const std::string& key, bool def) {
  const json* v = find(key);
  return v ? to_bool(*v, path_of(key)) : def;
}

std::string ObjectReader::get_string(const std::string& key, const std::string& def) {
  const json* v = find(key);
  return v ? to_string(*v, path_of(key)) : def;
}

std::vector<std::string> ObjectReader::get_string_list(const std::string& key,
                                                       const std::vector<std::string>& def) {
  const json* v = find(key);
  if (v == nullptr) return def;
  const std::string path = path_of(key);
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) type_error(path, "a list of strings", *v);
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) out.push_back(to_string((*v)[i], index_path(path, i)));
  return out;
}

void ObjectReader::finish() const {
  if (obj_ == nullptr) return;
  for (const auto& item : obj_->items()) {
    if (std::find(known_.begin(), known_.end(), item.key()) != known_.end()) continue;
    std::string known, best;
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (const auto& k : known_) {
      known += (known.empty() ? "" : ", ") + k;
      const size_t d = edit_distance(item.key(), k);
      if (d < best_distance) best_distance = d, best = k;
    }
    std::string reason = "unknown key";
    if (!best.empty() && best_distance <= std::max<size_t>(2, best.size() / 3))
      reason += " (did you mean \"" + best + "\"?)";
    reason += " (known: " + known + ")";
    throw ConfigError(path_of(item.key()), reason);
  }
}

}  // namespace lh::config_detail
