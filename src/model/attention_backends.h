// Constructors of the attention backends, one per file; attention_registry.cpp maps names to them.
#pragma once
#include <functional>
#include <memory>

#include "lighthouse/attention.h"

namespace lh {
// `runs_layer`: the layers it will be called for (all when empty); only those keep softmax statistics.
std::unique_ptr<AttentionOp> make_dense_attention(std::function<bool(int layer)> runs_layer = {});
// `options`: a phase's validated "lighthouse" options (lighthouse_options.h).
std::unique_ptr<AttentionOp> make_lighthouse_attention(const nlohmann::json& options);
}  // namespace lh
