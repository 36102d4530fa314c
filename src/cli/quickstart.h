// The embedded quickstart: configs/quickstart.json compiled into the binary, and its generated
// data, so that `lighthouse train` with no arguments works on a fresh machine.
#pragma once
#include "lighthouse/config.h"

namespace lh {
// The quickstart config (embedded at build time).
Config quickstart_config();
// Generates the toy-language shards the config's data.train/data.val point at, when missing.
void ensure_quickstart_data(const Config& config);
}  // namespace lh
