#include "lighthouse/backend.h"

#include <algorithm>
#include <cstdio>
#include <new>
#include <stdexcept>
#include <utility>

namespace lh {

AttentionBackward attention_backward_named(const std::string& name, const std::string& source) {
  if (name == "cudnn") return AttentionBackward::kCudnn;
  if (name == "flash") return AttentionBackward::kFlash;
  if (name == "auto") return AttentionBackward::kAuto;
  throw std::invalid_argument(source + ": \"" + name + "\" is not cudnn, flash or auto");
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    owner_ = std::exchange(o.owner_, nullptr);
    view_ = std::exchange(o.view_, Tensor{});
  }
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() {
  if (owner_ && view_.data) {
    owner_->raw_free(view_.data);
    owner_->bytes_in_use_ -= view_.bytes();
  }
}

std::string format_bytes(size_t bytes) {
  const double kib = bytes / 1024.0, mib = kib / 1024.0, gib = mib / 1024.0;
  char text[32];
  if (gib >= 1.0) std::snprintf(text, sizeof text, "%.2f GiB", gib);
  else if (mib >= 1.0) std::snprintf(text, sizeof text, "%.1f MiB", mib);
  else std::snprintf(text, sizeof text, "%.1f KiB", kib);
  return text;
}

Buffer Backend::allocate(DType dtype, size_t numel) {
  Tensor t{nullptr, dtype, numel};
  if (numel > 0) {
    // Running out says how much was asked for, next to what is held already. Other failures (a
    // device error surfacing here) pass through as what they are.
    const auto out_of_memory = [&](const std::string& why) {
      return OutOfMemory(name() + ": cannot allocate " + format_bytes(t.bytes()) + " (" + std::to_string(numel) + " " +
                         dtype_name(dtype) + " elements) with " + format_bytes(bytes_in_use_) + " held already: " + why);
    };
    try {
      t.data = raw_alloc(t.bytes());
    } catch (const OutOfMemory& e) {
      throw out_of_memory(e.what());
    } catch (const std::bad_alloc&) {
      throw out_of_memory("out of memory");
    }
    bytes_in_use_ += t.bytes();
    peak_bytes_ = std::max(peak_bytes_, bytes_in_use_);
  }
  Buffer b(this, t);
  if (numel > 0) fill_zero(t);
  return b;
}

void Backend::matmul_forward_residual(Tensor out, const Tensor& x, const Tensor& weight, const Tensor& residual,
                                      int N, int IC, int OC) {
  if (out.data == residual.data) throw std::invalid_argument("matmul_forward_residual: out aliases residual");
  matmul_forward(out, x, weight, N, IC, OC, OC);
  residual_forward(out, out, residual);
}

}  // namespace lh
