#include "lighthouse/rng.h"

#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace lh {

double Rng::normal() {
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

std::string Rng::state_string() const {
  char buf[4 * 17 + 1];
  std::snprintf(buf, sizeof buf, "%016llx%016llx%016llx%016llx", (unsigned long long)s_[0],
                (unsigned long long)s_[1], (unsigned long long)s_[2], (unsigned long long)s_[3]);
  return buf;
}

void Rng::set_state_string(const std::string& text) {
  if (text.size() != 64) throw std::runtime_error("RNG state must be 64 hex digits, got '" + text + "'");
  for (int i = 0; i < 4; ++i) {
    size_t used = 0;
    const std::string part = text.substr(16 * i, 16);
    const unsigned long long v = std::stoull(part, &used, 16);
    if (used != 16) throw std::runtime_error("RNG state is not hexadecimal: '" + text + "'");
    s_[i] = v;
  }
}

}  // namespace lh
