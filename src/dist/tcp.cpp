// Socket plumbing for the rendezvous and the launcher: poll() before every blocking call bounds
// each wait by the caller's deadline.
#include "dist/tcp.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lighthouse/dist.h"

namespace lh::tcp {
namespace {

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : int(std::min<long long>(left, 1 << 30));
}

// Waits until fd is ready for `events`; false on timeout. EINTR (e.g. SIGCHLD) just re-polls.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return true;  // ready, or an error/hang-up that the next call reports
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void Socket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Socket listen_any(int port, int backlog) {
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) throw DistError("rendezvous: socket() failed: " + errno_text());
  // A previous run's connections in TIME_WAIT must not block a restart on the same port.
  int one = 1;
  ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(uint16_t(port));
  if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw DistError("rendezvous: rank 0 cannot listen on port " + std::to_string(port) + ": " + errno_text() +
                    " (is another job using MASTER_PORT=" + std::to_string(port) + "?)");
  if (::listen(s.fd(), backlog) != 0) throw DistError("rendezvous: listen() failed: " + errno_text());
  return s;
}

Socket accept_until(const Socket& listener, Clock::time_point deadline) {
  while (wait_ready(listener.fd(), POLLIN, deadline)) {
    const int fd = ::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return Socket(fd);
    }
    if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
      throw DistError("rendezvous: accept() failed: " + errno_text());
  }
  return Socket();
}

Socket connect_until(const std::string& host, int port, Clock::time_point deadline, std::string* last_error) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  for (;;) {
    const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    if (rc == 0) break;
    // A temporary DNS failure is retried; an unknown name is a configuration error.
    if (rc != EAI_AGAIN || Clock::now() >= deadline)
      throw DistError("rendezvous: cannot resolve MASTER_ADDR '" + host + "': " + ::gai_strerror(rc));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  sockaddr_in target{};
  std::memcpy(&target, res->ai_addr, sizeof(target));
  ::freeaddrinfo(res);

  for (;;) {
    Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s.valid()) throw DistError("rendezvous: socket() failed: " + errno_text());
    int err = 0;
    if (::connect(s.fd(), reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        err = ETIMEDOUT;
        if (wait_ready(s.fd(), POLLOUT, deadline)) {
          socklen_t len = sizeof(err);
          ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
        }
      }
    }
    if (err == 0) {
      ::fcntl(s.fd(), F_SETFL, ::fcntl(s.fd(), F_GETFL) & ~O_NONBLOCK);
      int one = 1;
      ::setsockopt(s.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return s;
    }
    if (last_error) *last_error = std::strerror(err);
    // Connection refused means rank 0 is not listening yet: try again shortly.
    if (Clock::now() + std::chrono::milliseconds(100) >= deadline) return Socket();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Io send_all(const Socket& s, const void* data, size_t n, Clock::time_point deadline) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    if (!wait_ready(s.fd(), POLLOUT, deadline)) return Io::timeout;
    // MSG_NOSIGNAL: a peer that died must produce an error, not kill this process with SIGPIPE.
    const ssize_t k = ::send(s.fd(), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno == EPIPE || errno == ECONNRESET ? Io::closed : Io::error;
    }
    p += k;
    n -= size_t(k);
  }
  return Io::ok;
}

Io recv_all(const Socket& s, void* data, size_t n, Clock::time_point deadline) {
  auto* p = static_cast<uint8_t*>(data);
  while (n > 0) {
    if (!wait_ready(s.fd(), POLLIN, deadline)) return Io::timeout;
    const ssize_t k = ::recv(s.fd(), p, n, MSG_DONTWAIT);
    if (k == 0) return Io::closed;
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno == ECONNRESET ? Io::closed : Io::error;
    }
    p += k;
    n -= size_t(k);
  }
  return Io::ok;
}

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (24 - 8 * i));
}

uint32_t get_u32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

}  // namespace lh::tcp

namespace lh {

int find_free_port() {
  tcp::Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  // Probe the address the rendezvous listens on (listen_any, every interface): a port free on
  // loopback alone can still be bound on another interface (NCCL's bootstrap sockets, say), and
  // rank 0's listen on it then fails with "Address already in use".
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;  // the kernel picks an unused ephemeral port
  socklen_t len = sizeof(addr);
  if (!s.valid() || ::bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw DistError(std::string("cannot find a free TCP port: ") + std::strerror(errno));
  return ntohs(addr.sin_port);
}

}  // namespace lh
