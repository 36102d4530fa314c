// The gradient bucket plan: which parameters' gradients are reduced together while backward still
// runs. Buckets follow backward's order (reverse layout) so the first bucket fills first and its
// reduction overlaps the rest of backward; a bucket is a contiguous range so one collective call
// reduces it in place.
#include <string>

#include "lighthouse/dist.h"
#include "lighthouse/model.h"

namespace lh {

std::vector<GradBucket> plan_grad_buckets(const ParamLayout& layout, size_t bucket_bytes,
                                          size_t bytes_per_element) {
  if (bucket_bytes == 0 || bytes_per_element == 0)
    throw DistError("gradient buckets: bucket size and element size must be > 0");
  const auto& entries = layout.entries();
  // Contiguity is what makes a run of consecutive entries one range; ParamLayout guarantees it,
  // this guards against a future layout with padding or reordering.
  for (size_t i = 0; i + 1 < entries.size(); ++i)
    if (entries[i].offset + entries[i].numel != entries[i + 1].offset)
      throw DistError("gradient buckets: parameter '" + entries[i + 1].name + "' does not follow '" +
                      entries[i].name + "' contiguously");
  std::vector<GradBucket> buckets;
  size_t bytes = 0;
  for (size_t i = entries.size(); i-- > 0;) {
    const size_t b = entries[i].numel * bytes_per_element;
    // Start a new bucket when this parameter would overflow a non-empty one.
    if (buckets.empty() || (bytes > 0 && bytes + b > bucket_bytes)) {
      GradBucket g;
      g.last_entry = i;
      g.end = entries[i].offset + entries[i].numel;
      buckets.push_back(g);
      bytes = 0;
    }
    GradBucket& g = buckets.back();
    g.first_entry = i;
    g.begin = entries[i].offset;
    bytes += b;
  }
  return buckets;
}

}  // namespace lh
