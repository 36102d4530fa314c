// Maps the `attention` name of a phase to its backend. Option validation lives with the config
// (src/config), so a name reaching here is known.
#include <stdexcept>

#include "model/attention_backends.h"

namespace lh {

std::unique_ptr<AttentionOp> make_attention(const AttentionPhase& phase, const ModelConfig&) {
  if (phase.attention == "dense") return make_dense_attention();
  if (phase.attention == "lighthouse") return make_lighthouse_attention(phase.options);
  throw std::invalid_argument("unknown attention backend '" + phase.attention + "'");
}

}  // namespace lh
