// The knobs of the "lighthouse" attention backend (the `options` object of an attention phase).
// Parsed and validated with the config (src/config/attention_options.cpp), read by the backend
// (src/model/lighthouse_attention.cpp). docs/lighthouse.md explains each.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "lighthouse/ops/lighthouse_geometry.h"

namespace lh {

struct LighthouseOptions {
  // Defaults: the paper's recipe at 98K tokens (docs/lighthouse.md).
  int levels = 3;                 // L >= 2
  int pooling = 4;                // p, a power of two >= 2
  int topk = 1536;                // k, a positive multiple of lighthouse::kTileSlots
  std::string scorer = "norm";    // only the norm scorer is implemented
  std::vector<int> dense_layers;  // layers that stay dense during the phase (paper: 0, 1, n-2, n-1)

  lighthouse::Geometry geometry(int seq_len) const { return {seq_len, levels, pooling, topk}; }
  bool is_dense(int layer) const {
    return std::find(dense_layers.begin(), dense_layers.end(), layer) != dense_layers.end();
  }
};

}  // namespace lh
