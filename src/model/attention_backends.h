// Constructors of the attention backends, one per file; attention_registry.cpp maps names to them.
#pragma once
#include <memory>

#include "lighthouse/attention.h"

namespace lh {
std::unique_ptr<AttentionOp> make_dense_attention();
// `options`: a phase's validated "lighthouse" options (lighthouse_options.h).
std::unique_ptr<AttentionOp> make_lighthouse_attention(const nlohmann::json& options);
}  // namespace lh
