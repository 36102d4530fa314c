// Small POSIX I/O helpers shared by the checkpoint sources (internal header, not installed).
// They retry on EINTR and short transfers and throw std::runtime_error with the path and the errno
// text, because a checkpoint that was silently written short is worse than a crashed run.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace lh::detail {

[[noreturn]] inline void throw_errno(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error(what + " '" + path + "': " + std::strerror(err));
}

// Owns a file descriptor so that every early exit (exception) closes it.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  // Gives up ownership without closing (the caller now owns the descriptor).
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Explicit close that reports errors (close can surface deferred write errors, e.g. on NFS).
  void close_checked(const std::string& path) {
    const int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0) throw_errno("cannot close", path, errno);
  }

 private:
  int fd_ = -1;
};

inline Fd open_or_throw(const std::string& path, int flags, mode_t mode = 0644) {
  int fd;
  do fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_errno("cannot open", path, errno);
  return Fd(fd);
}

inline void write_all(int fd, const void* data, uint64_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux transfers at most ~2 GiB per call; cap the request and loop.
    const size_t chunk = n > (1u << 30) ? (1u << 30) : static_cast<size_t>(n);
    const ssize_t w = ::write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("write failed for", path, errno);
    }
    p += w;
    n -= static_cast<uint64_t>(w);
  }
}

inline void pread_all(int fd, void* dst, uint64_t n, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const size_t chunk = n > (1u << 30) ? (1u << 30) : static_cast<size_t>(n);
    const ssize_t r = ::pread(fd, p, chunk, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("read failed for", path, errno);
    }
    if (r == 0) throw std::runtime_error("unexpected end of file in '" + path + "'");
    p += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

inline void fsync_fd(int fd, const std::string& path) {
  if (::fsync(fd) != 0) throw_errno("fsync failed for", path, errno);
}

}  // namespace lh::detail
