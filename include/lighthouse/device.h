// Which devices this process can use. Safe on machines without a GPU or driver.
#pragma once
#include <string>

namespace lh {
// Number of usable CUDA devices; 0 when there is no driver or no device.
int cuda_device_count();
// A one-line description of device `index` (name, memory, compute capability).
std::string cuda_device_description(int index);
}  // namespace lh
