// Config serialization (to_json, equality), file loading and --set overrides.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "config/json_reader.h"
#include "lighthouse/config.h"

namespace lh {
using nlohmann::json;

namespace {
// One step of an override path: an object key or a list index. A purely numeric dotted segment
// ("phases.0") is kept as a key but indexes a list when the node it applies to is a list.
struct Segment {
  std::string key;
  bool bracket = false;  // written as [N]
  size_t index = 0;
};

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::vector<Segment> split_key(const std::string& key, const std::string& assignment) {
  const auto bad = [&](const std::string& why) {
    throw ConfigError(assignment, "malformed override key \"" + key + "\": " + why);
  };
  std::vector<Segment> segs;
  const size_t n = key.size();
  size_t i = 0;
  while (i < n) {
    if (key[i] == '[') {
      if (segs.empty() || key[i - 1] == '.') bad("[N] must follow a key");
      const size_t close = key.find(']', i);
      const std::string digits = close == std::string::npos ? "" : key.substr(i + 1, close - i - 1);
      if (!all_digits(digits) || digits.size() > 9) bad("expected [N] with a non-negative index");
      segs.push_back({digits, true, std::stoul(digits)});
      i = close + 1;
    } else {
      const size_t end = std::min(key.find_first_of(".[", i), n);
      const std::string name = key.substr(i, end - i);
      if (name.empty()) bad("empty path segment");
      segs.push_back({name, false, all_digits(name) && name.size() < 10 ? std::stoul(name) : 0});
      i = end;
    }
    if (i < n && key[i] == '.') {
      if (++i == n) bad("empty path segment");
    } else if (i < n && key[i] != '[') {
      bad("expected '.' or '[' after ']'");
    }
  }
  return segs;
}

// One pass over a config's text, outside strings and comments (ended as nlohmann ends them): the
// deepest nesting of arrays and objects (dump() and copies of a parsed document recurse, so a
// config nested a hundred thousand levels deep would overflow the stack), and the line of every
// object key in document order (the parser's callback, which finds duplicate keys, sees no
// positions; its n-th key event is the n-th key here).
struct TextScan {
  size_t deepest = 0;
  std::vector<size_t> key_lines;
};

TextScan scan_json_text(const std::string& text) {
  TextScan scan;
  size_t line = 1;
  // Open containers ('{' or '['), and the last token outside strings: a string is a key where
  // the parser reads one, first in an object or after a comma in it (before any ':' is checked).
  std::vector<char> open;
  char previous = 0;
  // Skips whitespace and comments from i; returns the index of the next other character.
  auto skip_blank = [&](size_t i) {
    while (i < text.size()) {
      if (text[i] == '\n') {
        ++line, ++i;
      } else if (std::isspace(static_cast<unsigned char>(text[i]))) {
        ++i;
      } else if (text.compare(i, 2, "//") == 0) {
        i = std::min(text.size(), text.find_first_of(std::string("\n\r\0", 3), i));
      } else if (text.compare(i, 2, "/*") == 0) {
        const size_t close = std::min(text.size(), text.find("*/", i + 2));
        line += size_t(std::count(text.begin() + std::ptrdiff_t(i), text.begin() + std::ptrdiff_t(close), '\n'));
        i = std::min(text.size(), close + 2);
      } else {
        break;
      }
    }
    return i;
  };
  for (size_t i = skip_blank(0); i < text.size(); i = skip_blank(i)) {
    const char c = text[i];
    if (c == '"') {
      if (!open.empty() && open.back() == '{' && (previous == '{' || previous == ',')) scan.key_lines.push_back(line);
      for (++i; i < text.size() && text[i] != '"'; ++i)
        if (text[i] == '\\') ++i;
    } else if (c == '[' || c == '{') {
      open.push_back(c);
      scan.deepest = std::max(scan.deepest, open.size());
    } else if ((c == ']' || c == '}') && !open.empty()) {
      open.pop_back();
    }
    previous = c;
    ++i;
  }
  return scan;
}

constexpr size_t kMaxNesting = 256;
}  // namespace

json Config::load_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path, std::string("cannot open config file: ") + std::strerror(errno));
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  const TextScan scan = scan_json_text(text);
  if (scan.deepest > kMaxNesting)
    throw ConfigError(path, "arrays and objects nested more than " + std::to_string(kMaxNesting) + " levels deep");
  // A key given twice in one object would silently keep only its last value (a whole section,
  // perhaps): refused. One frame per open object or array: an object's keys so far and its last
  // key, an array's element count, and the frame's path for the message ("attention.phases[1]").
  struct OpenFrame {
    bool array = false;
    std::string path;
    std::set<std::string> keys;
    std::string last_key;
    size_t elements = 0;
  };
  std::vector<OpenFrame> open;
  // The path of the value that starts now in the innermost open frame.
  const auto child_path = [&]() -> std::string {
    if (open.empty()) return "";
    OpenFrame& parent = open.back();
    if (parent.array) return parent.path + "[" + std::to_string(parent.elements++) + "]";
    return parent.path + (parent.path.empty() ? "" : ".") + parent.last_key;
  };
  size_t keys_seen = 0;
  const json::parser_callback_t no_duplicates = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) {
      const std::string path = child_path();
      open.push_back({event == json::parse_event_t::array_start, path, {}, "", 0});
    } else if (event == json::parse_event_t::object_end || event == json::parse_event_t::array_end) {
      open.pop_back();
    } else if (event == json::parse_event_t::value) {
      if (!open.empty() && open.back().array) ++open.back().elements;
    } else if (event == json::parse_event_t::key) {
      const std::string key = parsed.get<std::string>();
      const size_t index = keys_seen++;
      if (!open.back().keys.insert(key).second)
        throw ConfigError(path, "key \"" + key + "\" appears twice in " +
                                    (open.back().path.empty() ? std::string("the top-level object")
                                                              : "the object at \"" + open.back().path + "\"") +
                                    (index < scan.key_lines.size()
                                         ? " (again at line " + std::to_string(scan.key_lines[index]) + ")"
                                         : std::string()));
      open.back().last_key = key;
    }
    return true;
  };
  try {
    return json::parse(text, no_duplicates, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::out_of_range& e) {  // e.g. a number beyond double's range
    throw ConfigError(path, std::string("JSON value out of range: ") + e.what());
  } catch (const json::parse_error& e) {
    // e.byte is the 1-based offset of the last character read; turn it into line and column.
    const size_t last = std::min<size_t>(e.byte, text.size() + 1);
    size_t line = 1, column = 1;
    for (size_t k = 0; k + 1 < last; ++k) {
      if (text[k] == '\n') ++line, column = 1;
      else ++column;
    }
    std::string detail = e.what();
    const size_t colon = detail.find(": ", detail.find("parse error"));
    if (colon != std::string::npos) detail = detail.substr(colon + 2);
    throw ConfigError(path, "JSON syntax error at line " + std::to_string(line) + ", column " +
                                std::to_string(column) + ": " + detail);
  }
}

Config Config::load_file(const std::string& path) { return load_file(path, {}); }

Config Config::load_file(const std::string& path, const std::vector<std::string>& overrides) {
  return load(load_json_file(path), overrides, path);
}

// Checks for configs a user writes, not for those stored in checkpoints (which must keep loading
// after a rule is added): a wsd decay that starts inside the warm-up drops the lr mid-ramp.
static void check_new_config(const Config& c) {
  const ScheduleConfig& s = c.schedule;
  if (s.decay != "wsd") return;
  const int steps = c.training.steps;
  const int decay_steps = std::max(1, int(std::lround(s.decay_fraction * steps)));  // as learning_rate() does
  if (s.warmup_steps > steps - decay_steps)
    throw ConfigError("schedule.warmup_steps", std::to_string(s.warmup_steps) +
                                                   " overlaps the wsd decay, which takes the last " +
                                                   std::to_string(decay_steps) + " of " + std::to_string(steps) +
                                                   " steps (schedule.decay_fraction)");
}

Config Config::load(nlohmann::json j, const std::vector<std::string>& overrides, const std::string& source) {
  for (const auto& o : overrides) apply_override(j, o);
  try {
    Config c = from_json(j);
    check_new_config(c);
    return c;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    const std::string reason = what.substr(std::min(what.size(), e.path.size() + 2));
    // The culprit's source: the last --set whose key is the offending key or holds it, else the file.
    auto dotted = [](const std::string& k) {
      std::string out;
      for (char c : k)
        if (c != ']') out += c == '[' ? '.' : c;
      return out;
    };
    const std::string culprit = dotted(e.path);
    for (auto o = overrides.rbegin(); o != overrides.rend(); ++o) {
      const std::string key = dotted(trim(o->substr(0, o->find('='))));
      if (culprit == key || culprit.compare(0, key.size() + 1, key + ".") == 0)
        throw ConfigError(e.path, reason + " (from --set " + *o + ")");
    }
    std::string with;  // a rule across keys may have been broken by an override of another key
    for (const auto& o : overrides) with += (with.empty() ? " with --set " : ", --set ") + o;
    throw ConfigError(e.path, reason + " (in " + source + with + ")");
  }
}

void Config::apply_override(json& j, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos)
    throw ConfigError(assignment, "malformed override: expected key.path=value");
  const std::string key = trim(assignment.substr(0, eq));
  if (key.empty()) throw ConfigError(assignment, "malformed override: empty key before '='");
  const std::vector<Segment> segs = split_key(key, assignment);

  if (scan_json_text(assignment.substr(eq + 1)).deepest > kMaxNesting)
    throw ConfigError(key, "the --set value is nested more than " + std::to_string(kMaxNesting) + " levels deep");
  json value = json::parse(assignment.substr(eq + 1), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = trim(assignment.substr(eq + 1));  // not JSON: a plain string

  if (j.is_null()) j = json::object();
  json* node = &j;
  std::string path;
  for (const Segment& seg : segs) {
    const bool as_index = seg.bracket || (node->is_array() && all_digits(seg.key));
    if (node->is_null()) *node = as_index ? json::array() : json::object();
    if (as_index) {
      if (!node->is_array())
        throw ConfigError(path.empty() ? "(root)" : path,
                          "cannot index [" + seg.key + "]: not a list (" + config_detail::describe(*node) + ")");
      if (seg.index > node->size())
        throw ConfigError(path, "index " + seg.key + " is out of range: the list has " +
                                    std::to_string(node->size()) + " elements (index " +
                                    std::to_string(node->size()) + " appends)");
      if (seg.index == node->size()) node->push_back(nullptr);
      node = &(*node)[seg.index];
      path = config_detail::index_path(path, seg.index);
    } else {
      if (!node->is_object())
        throw ConfigError(path.empty() ? "(root)" : path,
                          "cannot set key \"" + seg.key + "\" inside " + config_detail::describe(*node));
      node = &(*node)[seg.key];
      path = config_detail::join_path(path, seg.key);
    }
  }
  *node = std::move(value);
}

json Config::to_json() const {
  json phases = json::array();
  for (const auto& p : attention.phases)
    phases.push_back({{"until_step", p.until_step}, {"attention", p.attention}, {"options", p.options}});
  return {
      {"model",
       {{"dim", model.dim}, {"n_layers", model.n_layers}, {"n_heads", model.n_heads},
        {"n_kv_heads", model.n_kv_heads}, {"ffn_hidden", model.ffn_hidden},
        {"vocab_size", model.vocab_size}, {"rope_theta", model.rope_theta},
        {"norm_eps", model.norm_eps}, {"max_seq_len", model.max_seq_len},
        {"tied_embeddings", model.tied_embeddings}, {"init_std", model.init_std}}},
      {"data",
       {{"train", data.train}, {"val", data.val}, {"seq_len", data.seq_len},
        {"micro_batch", data.micro_batch}}},
      {"optimizer",
       {{"lr", optimizer.lr}, {"beta1", optimizer.beta1}, {"beta2", optimizer.beta2},
        {"eps", optimizer.eps}, {"weight_decay", optimizer.weight_decay},
        {"grad_clip", optimizer.grad_clip}}},
      {"schedule",
       {{"decay", schedule.decay}, {"warmup_steps", schedule.warmup_steps},
        {"min_lr", schedule.min_lr}, {"decay_fraction", schedule.decay_fraction}}},
      {"training",
       {{"steps", training.steps}, {"global_batch", training.global_batch},
        {"grad_accum", training.grad_accum}, {"seed", training.seed},
        {"eval_interval", training.eval_interval}, {"eval_batches", training.eval_batches},
        {"checkpoint_interval", training.checkpoint_interval},
        {"keep_last", training.keep_last}, {"device", training.device},
        {"recompute", recompute_name(training.recompute)}, {"deterministic", training.deterministic},
        {"attention_backward", training.attention_backward}, {"grad_bucket_mb", training.grad_bucket_mb}}},
      {"attention", {{"phases", phases}}},
      {"logging", {{"dir", logging.dir}, {"interval", logging.interval}}},
  };
}

bool operator==(const Config& a, const Config& b) {
  const auto& [ma, da, oa, sa, ta, aa, la] = a;
  const auto& [mb, db, ob, sb, tb, ab, lb] = b;
  const auto model = [](const ModelConfig& m) {
    return std::tie(m.dim, m.n_layers, m.n_heads, m.n_kv_heads, m.ffn_hidden, m.vocab_size,
                    m.rope_theta, m.norm_eps, m.max_seq_len, m.tied_embeddings, m.init_std);
  };
  const auto data = [](const DataConfig& d) {
    return std::tie(d.train, d.val, d.seq_len, d.micro_batch);
  };
  const auto opt = [](const OptimizerConfig& o) {
    return std::tie(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, o.grad_clip);
  };
  const auto sched = [](const ScheduleConfig& s) {
    return std::tie(s.decay, s.warmup_steps, s.min_lr, s.decay_fraction);
  };
  const auto train = [](const TrainingConfig& t) {
    return std::tie(t.steps, t.global_batch, t.grad_accum, t.seed, t.eval_interval,
                    t.eval_batches, t.checkpoint_interval, t.keep_last, t.device, t.recompute, t.deterministic,
                    t.attention_backward, t.grad_bucket_mb);
  };
  const auto phases_equal = [](const AttentionConfig& x, const AttentionConfig& y) {
    if (x.phases.size() != y.phases.size()) return false;
    for (size_t i = 0; i < x.phases.size(); ++i) {
      const auto& p = x.phases[i];
      const auto& q = y.phases[i];
      if (p.until_step != q.until_step || p.attention != q.attention || p.options != q.options)
        return false;
    }
    return true;
  };
  return model(ma) == model(mb) && data(da) == data(db) && opt(oa) == opt(ob) &&
         sched(sa) == sched(sb) && train(ta) == train(tb) && phases_equal(aa, ab) &&
         la.dir == lb.dir && la.interval == lb.interval;
}
bool operator!=(const Config& a, const Config& b) { return !(a == b); }

}  // namespace lh
