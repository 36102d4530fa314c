// --help text: each option's default at the end of its description, "(default: 3)", where CLI11
// would print it glued to the type ("INT:INT >= 1=3").
#pragma once
#include <string>

#include <CLI/CLI.hpp>

namespace lh::cli {

class HelpFormatter : public CLI::Formatter {
 public:
  std::string make_option_opts(const CLI::Option* opt) const override {
    std::string opts = CLI::Formatter::make_option_opts(opt);
    if (opt->get_option_text().empty() && !opt->get_default_str().empty()) {
      const std::string glued = "=" + opt->get_default_str();
      const size_t at = opts.find(glued);
      if (at != std::string::npos) opts.erase(at, glued.size());
    }
    return opts;
  }
  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string desc = CLI::Formatter::make_option_desc(opt);
    if (!shows_default(opt)) return desc;
    return desc + (desc.empty() ? "" : " ") + "(default: " + opt->get_default_str() + ")";
  }

 private:
  // Options that take a value and have one by default; flags (no value), required options and
  // empty defaults have none, and a description that states its own default ("a free one" for a
  // port 0) keeps it.
  static bool shows_default(const CLI::Option* opt) {
    const std::string& d = opt->get_default_str();
    return opt->get_option_text().empty() && opt->get_type_size() != 0 && !opt->get_required() && !d.empty() &&
           d != "[]" && d != "\"\"" && opt->get_description().find("(default") == std::string::npos;
  }
};

}  // namespace lh::cli
