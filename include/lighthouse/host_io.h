// Moving tensors between a backend and host memory in a fixed host type, whatever the device
// dtype (F32, F64, BF16): for losses, logits and initial weights.
#pragma once
#include <vector>

#include "lighthouse/backend.h"

namespace lh {
std::vector<double> download_doubles(Backend& be, const Tensor& t);
std::vector<float> download_floats(Backend& be, const Tensor& t);
// Converts host doubles to t's dtype and uploads them (values.size() == t.numel).
void upload_doubles(Backend& be, Tensor t, const std::vector<double>& values);

// bf16 <-> float on the host; to_bf16 rounds to nearest even and keeps NaNs NaN.
uint16_t float_to_bf16(float f);
float bf16_to_float(uint16_t b);
}  // namespace lh
