// Safetensors reader/writer (https://github.com/huggingface/safetensors format):
//   [u64 little-endian header length N][N bytes JSON header, space-padded][data section]
// header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//          "__metadata__": {"key": "value", ...}}   (offsets relative to the data section start)
//
// Only the dtypes lh::DType can represent (F32, F64, BF16) are accepted; any other dtype string
// (F16, I64, ...) is rejected at open() as unsupported, because nothing here could read it.
// The writer is byte-compatible with HuggingFace's loaders (safe_open / from_pretrained).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lighthouse/tensor.h"

namespace lh::safetensors {

struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // {} is a scalar (1 element); any 0 extent is an empty tensor
  const void* data = nullptr;  // host memory, numel(shape) * dtype_size(dtype) bytes
};

// Writes the tensors in the given order (packed contiguously) and `metadata` as "__metadata__".
// Writes directly to `path` (O_TRUNC): atomicity is the caller's job, normally by writing into a
// lh::ckpt::StagedDir. The data is fsync'ed before returning. Throws std::runtime_error naming the
// path (and the errno text) on any I/O failure, after removing the partial file, and
// std::invalid_argument for duplicate/empty/"__metadata__" names, negative extents or null data.
void write_file(const std::string& path, const std::vector<TensorRef>& tensors,
                const std::map<std::string, std::string>& metadata = {});

struct TensorInfo {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute byte offset of the tensor in the file
  uint64_t nbytes = 0;
  uint64_t numel() const { return dtype_size(dtype) ? nbytes / dtype_size(dtype) : 0; }
};

// Reader. Holds an open file descriptor and the parsed header only; tensor bytes are read with
// pread straight into the caller's buffer (no second in-memory copy, works for multi-GB files).
class File {
 public:
  // Opens and fully validates the header before any data can be used (see safetensors.cpp for
  // the list of checks). Throws std::runtime_error naming the file (and tensor) on any problem.
  static File open(const std::string& path);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // in data-offset (i.e. writer) order
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // throws when missing
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t data_bytes() const { return data_bytes_; }

  // Reads tensor `name` into dst (must hold info(name).nbytes bytes). Throws std::runtime_error
  // with file, tensor, expected vs got when the name is missing or dtype/shape differ.
  void read(const std::string& name, DType expected, const std::vector<int64_t>& expected_shape,
            void* dst) const;

 private:
  File() = default;
  std::string path_;
  int fd_ = -1;
  uint64_t data_bytes_ = 0;
  std::vector<std::pair<std::string, TensorInfo>> tensors_;  // sorted by offset
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[2, 3]", for error messages

}  // namespace lh::safetensors
