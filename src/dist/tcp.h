// Minimal blocking TCP with deadlines for the rendezvous (IPv4 only): every call that can wait
// takes an absolute deadline, so no rank can hang in the rendezvous for longer than its timeout.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace lh::tcp {

using Clock = std::chrono::steady_clock;

// An owned socket file descriptor; closed on destruction.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { close(); }
  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void close();

 private:
  int fd_ = -1;
};

enum class Io { ok, timeout, closed, error };

// Listens on `port` of every IPv4 interface with SO_REUSEADDR; throws DistError naming the port.
Socket listen_any(int port, int backlog);
// Accepts one connection; an invalid Socket when the deadline passes first.
Socket accept_until(const Socket& listener, Clock::time_point deadline);
// Connects to host:port, retrying (the listener may not exist yet) until the deadline. Returns an
// invalid Socket on timeout with the last failure in *last_error; throws DistError when the host
// name cannot be resolved at all.
Socket connect_until(const std::string& host, int port, Clock::time_point deadline, std::string* last_error);

Io send_all(const Socket& s, const void* data, size_t n, Clock::time_point deadline);
Io recv_all(const Socket& s, void* data, size_t n, Clock::time_point deadline);

// Big-endian (network order) 32-bit integers, so ranks on different hosts agree on framing.
void put_u32(uint8_t* p, uint32_t v);
uint32_t get_u32(const uint8_t* p);

}  // namespace lh::tcp
