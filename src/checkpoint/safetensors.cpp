// Safetensors reader/writer; format summary in include/lighthouse/safetensors.h.
#include "lighthouse/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <utility>

#include "checkpoint/posix_io.h"

namespace lh::safetensors {
namespace {

// Same cap as the reference implementation: a bigger header is corruption, not a real model, and
// refusing it avoids a giant allocation driven by an untrusted length field.
constexpr uint64_t kMaxHeader = 100'000'000;

[[noreturn]] void fail(const std::string& path, const std::string& msg) {
  throw std::runtime_error("safetensors '" + path + "': " + msg);
}

bool parse_dtype(const std::string& s, DType* out) {
  for (DType t : {DType::F32, DType::F64, DType::BF16})
    if (s == dtype_name(t)) return *out = t, true;
  return false;
}

// numel * dtype_size with overflow detection; extents must already be non-negative.
bool byte_size(const std::vector<int64_t>& shape, DType t, uint64_t* out) {
  uint64_t n = dtype_size(t);
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  *out = n;
  return true;
}

// JSON integer -> uint64, rejecting negatives, floats and non-numbers.
bool as_u64(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) return *out = j.get<uint64_t>(), true;
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return *out = j.get<uint64_t>(), true;
  return false;
}

void put_le64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

}  // namespace

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void write_file(const std::string& path, const std::vector<TensorRef>& tensors,
                const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps the header in writer order, which makes files easy to eyeball and diff.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const TensorRef& t : tensors) {
    const std::string where = "safetensors write '" + path + "', tensor '" + t.name + "': ";
    if (t.name.empty() || t.name == "__metadata__")
      throw std::invalid_argument(where + "reserved or empty name");
    if (!seen.insert(t.name).second) throw std::invalid_argument(where + "duplicate name");
    for (int64_t d : t.shape)
      if (d < 0) throw std::invalid_argument(where + "negative extent in " + shape_str(t.shape));
    uint64_t nbytes = 0;
    if (!byte_size(t.shape, t.dtype, &nbytes))
      throw std::invalid_argument(where + "size overflows 64 bits");
    if (nbytes > 0 && t.data == nullptr) throw std::invalid_argument(where + "null data");
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    sizes.push_back(nbytes);
    offset += nbytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (useful for mmap-ing readers).
  text.append((8 - text.size() % 8) % 8, ' ');

  detail::Fd fd = detail::open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC);
  try {
    unsigned char len[8];
    put_le64(len, text.size());
    detail::write_all(fd.get(), len, 8, path);
    detail::write_all(fd.get(), text.data(), text.size(), path);
    for (size_t i = 0; i < tensors.size(); ++i)
      if (sizes[i] > 0) detail::write_all(fd.get(), tensors[i].data, sizes[i], path);
    detail::fsync_fd(fd.get(), path);
    fd.close_checked(path);
  } catch (...) {
    fd.reset();
    ::unlink(path.c_str());  // never leave a truncated file that might later be mistaken as valid
    throw;
  }
}

File File::open(const std::string& path) {
  File f;
  f.path_ = path;
  detail::Fd fd = detail::open_or_throw(path, O_RDONLY);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) detail::throw_errno("cannot stat", path, errno);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) fail(path, "file is " + std::to_string(size) + " bytes, shorter than the header");
  unsigned char len[8];
  detail::pread_all(fd.get(), len, 8, 0, path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n > size - 8 || n >= kMaxHeader)
    fail(path, "header length " + std::to_string(n) + " is impossible for a file of " +
                   std::to_string(size) + " bytes");
  std::string text(n, '\0');
  detail::pread_all(fd.get(), text.data(), n, 8, path);
  f.data_bytes_ = size - 8 - n;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) fail(path, "__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) fail(path, "__metadata__ value '" + m.key() + "' not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!e.is_object()) fail(path, where + "entry is not an object");
    TensorInfo info;
    const auto dt = e.find("dtype");
    if (dt == e.end() || !dt->is_string()) fail(path, where + "missing dtype");
    if (!parse_dtype(dt->get<std::string>(), &info.dtype))
      fail(path, where + "unsupported dtype '" + dt->get<std::string>() + "'");
    const auto sh = e.find("shape");
    if (sh == e.end() || !sh->is_array()) fail(path, where + "missing shape");
    for (const auto& d : *sh) {
      uint64_t v = 0;
      if (!as_u64(d, &v) || v > static_cast<uint64_t>(INT64_MAX))
        fail(path, where + "shape " + sh->dump() + " has a negative or non-integer extent");
      info.shape.push_back(static_cast<int64_t>(v));
    }
    const auto off = e.find("data_offsets");
    uint64_t begin = 0, end = 0;
    if (off == e.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], &begin) ||
        !as_u64((*off)[1], &end) || begin > end)
      fail(path, where + "data_offsets must be [begin, end] with 0 <= begin <= end");
    if (end > f.data_bytes_)
      fail(path, where + "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                     "] exceed the data section of " + std::to_string(f.data_bytes_) + " bytes");
    uint64_t expect = 0;
    if (!byte_size(info.shape, info.dtype, &expect) || expect != end - begin)
      fail(path, where + "shape " + shape_str(info.shape) + " of " + dtype_name(info.dtype) +
                     " needs " + std::to_string(expect) + " bytes but data_offsets span " +
                     std::to_string(end - begin));
    info.offset = 8 + n + begin;
    info.nbytes = end - begin;
    f.tensors_.emplace_back(name, std::move(info));
  }

  // Tensors must tile the data section exactly: no overlap (aliasing would let one corrupted
  // tensor silently feed two parameters) and no gaps/trailing bytes (a sign of truncation or of a
  // file written by something we do not understand).
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.second.offset, a.second.nbytes) <
           std::make_pair(b.second.offset, b.second.nbytes);
  });
  uint64_t cursor = 8 + n;
  for (const auto& [name, info] : f.tensors_) {
    if (info.offset < cursor) fail(path, "tensor '" + name + "' overlaps the previous tensor");
    if (info.offset > cursor)
      fail(path, "gap of " + std::to_string(info.offset - cursor) + " bytes before tensor '" +
                     name + "'");
    cursor = info.offset + info.nbytes;
  }
  if (cursor != size)
    fail(path, std::to_string(size - cursor) + " bytes after the last tensor are not covered");

  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].first] = i;
  // Ownership moves to the File only after validation succeeded (Fd closes it on every throw).
  f.fd_ = fd.release();
  return f;
}

File::File(File&& o) noexcept { *this = std::move(o); }

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
    data_bytes_ = o.data_bytes_;
    tensors_ = std::move(o.tensors_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<std::string> File::names() const {
  std::vector<std::string> out;
  for (const auto& t : tensors_) out.push_back(t.first);
  return out;
}

const TensorInfo& File::info(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) fail(path_, "tensor '" + name + "' not found");
  return tensors_[it->second].second;
}

void File::read(const std::string& name, DType expected,
                const std::vector<int64_t>& expected_shape, void* dst) const {
  const TensorInfo& ti = info(name);
  if (ti.dtype != expected)
    fail(path_, "tensor '" + name + "': dtype mismatch: expected " + dtype_name(expected) +
                    ", got " + dtype_name(ti.dtype));
  if (ti.shape != expected_shape)
    fail(path_, "tensor '" + name + "': shape mismatch: expected " + shape_str(expected_shape) +
                    ", got " + shape_str(ti.shape));
  if (ti.nbytes > 0) detail::pread_all(fd_, dst, ti.nbytes, ti.offset, path_);
}

}  // namespace lh::safetensors
