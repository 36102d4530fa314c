// Command-line number checks whose messages say what is wanted: CLI11's PositiveNumber answers a
// 0 with "not in range 0 to 1.79e308", and a uint64_t option takes "-1" as 2^64 - 1.
#pragma once
#include <CLI/CLI.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace lh::cli {

// CLI11 converts integers with strtoll(..., base 0), which reads "010" as octal 8: a leading zero
// is refused rather than read differently from how it was checked.
inline bool leading_zero(const std::string& s) {
  const size_t digits = s.find_first_not_of("+-");
  return digits != std::string::npos && s.size() > digits + 1 && s[digits] == '0';
}

// A whole number (decimal digits, optionally signed) of at least `min`.
inline CLI::Validator whole_at_least(long long min) {
  return CLI::Validator(
      [min](std::string& s) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno == ERANGE) return "'" + s + "' is not a whole number";
        if (leading_zero(s)) return "'" + s + "': write it without leading zeros";
        if (v < min) return "must be >= " + std::to_string(min) + ", got " + s;
        return {};
      },
      "INT >= " + std::to_string(min));
}

// A number (any decimal or exponent notation) above `min` (or at least `min`) and at most `max`.
inline CLI::Validator number_above(double min, bool or_equal = false, double max = 1e300) {
  char bound[64];
  std::snprintf(bound, sizeof bound, "%s %g", or_equal ? ">=" : ">", min);
  if (max < 1e300) std::snprintf(bound + std::strlen(bound), sizeof bound - std::strlen(bound), " and <= %g", max);
  return CLI::Validator(
      [bound = std::string(bound), min, or_equal, max](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0' || !std::isfinite(v)) return "'" + s + "' is not a finite number";
        if ((or_equal ? v < min : v <= min) || v > max) return "must be " + bound + ", got " + s;
        return {};
      },
      "NUMBER " + std::string(bound));
}

// A fraction in [0, 1): a share that must leave something over (the validation split).
inline CLI::Validator fraction_below_one() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0' || !std::isfinite(v)) return "'" + s + "' is not a finite number";
        if (v < 0 || v >= 1) return "must be >= 0 and < 1, got " + s;
        return {};
      },
      "NUMBER in [0, 1)");
}

// Seconds for timeouts and grace periods: a day at most, so that milliseconds fit any integer type.
constexpr double kMaxSeconds = 86400;

// An unsigned 64-bit integer written as plain decimal digits (seeds).
inline CLI::Validator unsigned_64() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
          return "'" + s + "' is not a whole number >= 0";
        if (leading_zero(s)) return "'" + s + "': write it without leading zeros";
        char* end = nullptr;
        errno = 0;
        std::strtoull(s.c_str(), &end, 10);
        if (errno == ERANGE) return s + " is above 2^64 - 1";
        return {};
      },
      "UINT64");
}

// `--device-memory GIB` (train; bench attention, lighthouse, train): the backend behaves as a device of that size
// (Backend::limit_memory), e.g. 79.6 for an 80 GB H100 on a larger card. 0 (the default): the whole device.
inline void add_device_memory_option(CLI::App* cmd, double& gib) {
  cmd->add_option("--device-memory", gib,
                  "Behave as a device of this many GiB (e.g. 79.6 for an 80 GB H100 on a larger card; what other "
                  "processes hold on the GPU counts against it): allocations past it fail, and recompute auto plans "
                  "within it. 0: the whole device")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            const std::string range = number_above(0, /*or_equal=*/true, /*max=*/1e6)(s);
            if (!range.empty()) return range;
            const double v = std::strtod(s.c_str(), nullptr);
            // Tiny caps are for tests on tiny models; one below 1 KiB would round to no cap at all.
            if (v > 0 && v < 1.0 / (1 << 20)) return "must be 0 (the whole device) or at least 1 KiB (1/1048576 GiB), got " + s;
            return {};
          },
          "GiB: 0 or 1/1048576 .. 1e6"));
}
inline size_t gib_to_bytes(double gib) { return size_t(gib * double(1ull << 30)); }

}  // namespace lh::cli
