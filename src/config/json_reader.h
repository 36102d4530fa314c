// A small typed reader over one JSON object that knows its own path ("model", "attention.phases[1]")
// so every error it raises is a ConfigError naming the exact key. Each get_* call registers the key
// as known; finish() then rejects any key that was never asked for ("unknown key (known: ...)").
//
// Type rules (documented in docs/config.md):
//   integers  accept JSON integers and floats with an integral value (3.0, 1e5); 3.5 is an error
//   numbers   accept integers and floats; must be finite
//   booleans  only true/false (never 0/1); numbers never accept booleans
//   strings   only JSON strings
//   string lists accept an array of strings or, for convenience, a single string (= one element)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lh::config_detail {

// "string \"abc\"", "number 3.5", "boolean true", "array [1,2]" (long values are shortened).
std::string describe(const nlohmann::json& v);

// Joins a parent path and a key: ("", "model") -> "model"; ("model", "dim") -> "model.dim".
std::string join_path(const std::string& parent, const std::string& key);
// "attention.phases" + 2 -> "attention.phases[2]".
std::string index_path(const std::string& parent, size_t index);

// Typed conversions of a single value; `path` names it in errors.
int64_t to_int64(const nlohmann::json& v, const std::string& path);
int to_int(const nlohmann::json& v, const std::string& path);
uint64_t to_uint64(const nlohmann::json& v, const std::string& path);
double to_double(const nlohmann::json& v, const std::string& path);
bool to_bool(const nlohmann::json& v, const std::string& path);
std::string to_string(const nlohmann::json& v, const std::string& path);

class ObjectReader {
 public:
  // Throws ConfigError(path, "expected an object, got ...") when `j` is not an object. A null `j`
  // (a missing section) reads as an empty object so that every key takes its default.
  ObjectReader(const nlohmann::json& j, std::string path);

  const std::string& path() const { return path_; }
  std::string path_of(const std::string& key) const { return join_path(path_, key); }
  bool has(const std::string& key) const;

  int get_int(const std::string& key, int def);
  uint64_t get_uint64(const std::string& key, uint64_t def);
  double get_double(const std::string& key, double def);
  bool get_bool(const std::string& key, bool def);
  std::string get_string(const std::string& key, const std::string& def);
  std::vector<std::string> get_string_list(const std::string& key,
                                           const std::vector<std::string>& def);
  // The raw value (nullptr when absent); registers the key as known.
  const nlohmann::json* get_raw(const std::string& key);
  // Throws ConfigError for the first key no get_* asked for, listing the known keys.
  void finish() const;

 private:
  const nlohmann::json* find(const std::string& key);
  const nlohmann::json* obj_;  // nullptr = missing section
  std::string path_;
  std::vector<std::string> known_;
};

}  // namespace lh::config_detail
