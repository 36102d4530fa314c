#include "lighthouse/backend.h"

#include <utility>

namespace lh {

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (owner_ && view_.data) owner_->raw_free(view_.data);
    owner_ = std::exchange(o.owner_, nullptr);
    view_ = std::exchange(o.view_, Tensor{});
  }
  return *this;
}

Buffer::~Buffer() {
  if (owner_ && view_.data) owner_->raw_free(view_.data);
}

Buffer Backend::allocate(DType dtype, size_t numel) {
  Tensor t{nullptr, dtype, numel};
  if (numel > 0) t.data = raw_alloc(t.bytes());
  Buffer b(this, t);
  if (numel > 0) fill_zero(t);
  return b;
}

}  // namespace lh
