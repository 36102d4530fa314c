// rendezvous_broadcast(): rank 0 is a tiny TCP server for one exchange. Wire format (big-endian
// u32 fields; docs/distributed.md):
//   rank r -> 0   hello  {magic, version, world_size, r}
//   0 -> rank r   frame  {magic, version, status, length} + length bytes (payload, or error text)
//   rank r -> 0   ack    {magic, r}
//   0 -> rank r   frame  (status ok, empty: everyone acknowledged; or an error)
// The ack round makes it a barrier: no rank returns before all ranks received the payload.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dist/tcp.h"
#include "lighthouse/dist.h"

namespace lh {
namespace {

using tcp::Clock;
using tcp::Io;
using tcp::Socket;

constexpr uint32_t kMagic = 0x4C485256;  // "LHRV"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kOk = 0, kFailed = 1;
constexpr uint32_t kMaxPayload = 1u << 20;  // the NCCL id is 128 bytes; refuse garbage lengths

std::string seconds(std::chrono::milliseconds t) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", double(t.count()) / 1000.0);
  return buf;
}

// "2, 4-7, 9": compact, because at scale hundreds of ranks may be missing.
std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (!s.empty()) s += ", ";
    s += std::to_string(ranks[i]);
    if (j > i) s += "-" + std::to_string(ranks[j]);
    i = j + 1;
  }
  return s;
}

Io send_frame(const Socket& s, uint32_t status, const void* data, size_t n, Clock::time_point deadline) {
  std::vector<uint8_t> buf(16 + n);
  tcp::put_u32(&buf[0], kMagic);
  tcp::put_u32(&buf[4], kVersion);
  tcp::put_u32(&buf[8], status);
  tcp::put_u32(&buf[12], uint32_t(n));
  if (n) std::memcpy(&buf[16], data, n);
  return tcp::send_all(s, buf.data(), buf.size(), deadline);
}

// ---- rank 0 ---------------------------------------------------------------------------------------
class Server {
 public:
  Server(const DistEnv& env, std::chrono::milliseconds timeout)
      : env_(env), timeout_(timeout), deadline_(Clock::now() + timeout), peers_(size_t(env.world_size)) {}

  std::vector<uint8_t> run(const std::vector<uint8_t>& payload) {
    if (payload.size() > kMaxPayload) throw DistError("rendezvous: payload too large");
    const Socket listener = tcp::listen_any(env_.master_port, std::min(env_.world_size, 4096));
    for (int arrived = 1; arrived < env_.world_size;) {
      Socket s = tcp::accept_until(listener, deadline_);
      if (!s.valid())
        fail("timed out after " + seconds(timeout_) + " waiting on port " + std::to_string(env_.master_port) +
             ": " + std::to_string(arrived) + " of " + std::to_string(env_.world_size) +
             " ranks arrived; missing ranks: " + rank_list(missing()));
      if (admit(std::move(s))) ++arrived;
    }
    for (int r = 1; r < env_.world_size; ++r)
      if (send_frame(peers_[r], kOk, payload.data(), payload.size(), deadline_) != Io::ok)
        fail("lost rank " + std::to_string(r) + " while sending it the payload");
    std::vector<int> silent;
    for (int r = 1; r < env_.world_size; ++r) {
      uint8_t ack[8];
      if (tcp::recv_all(peers_[r], ack, sizeof(ack), deadline_) != Io::ok || tcp::get_u32(ack) != kMagic ||
          int(tcp::get_u32(ack + 4)) != r)
        silent.push_back(r);
    }
    if (!silent.empty()) fail("ranks " + rank_list(silent) + " did not acknowledge the payload");
    for (int r = 1; r < env_.world_size; ++r) send_frame(peers_[r], kOk, nullptr, 0, deadline_);
    return payload;
  }

 private:
  // Reads one hello. Strays (port scanners, a client that hung up or never speaks) are dropped; a
  // lighthouse rank that disagrees with this one fails the whole rendezvous. A rank sends its hello
  // as soon as it connects, so a connection silent for kHelloWait is a stray, not a slow rank: it
  // must not hold up the ranks behind it until the rendezvous deadline.
  bool admit(Socket s) {
    uint8_t hello[16];
    const Clock::time_point hello_deadline = std::min(deadline_, Clock::now() + kHelloWait);
    if (tcp::recv_all(s, hello, sizeof(hello), hello_deadline) != Io::ok || tcp::get_u32(hello) != kMagic)
      return false;
    const uint32_t version = tcp::get_u32(hello + 4);
    const int world = int(tcp::get_u32(hello + 8));
    const int rank = int(tcp::get_u32(hello + 12));
    std::string error;
    if (version != kVersion)
      error = "rank " + std::to_string(rank) + " speaks rendezvous version " + std::to_string(version) +
              ", rank 0 speaks " + std::to_string(kVersion) + " (different lighthouse binaries?)";
    else if (world != env_.world_size)
      error = "rank " + std::to_string(rank) + " has world size " + std::to_string(world) + " but rank 0 has " +
              std::to_string(env_.world_size);
    else if (rank < 1 || rank >= env_.world_size)
      error = "a peer announced rank " + std::to_string(rank) + ", outside [1, " +
              std::to_string(env_.world_size) + ")";
    else if (peers_[rank].valid())
      error = "duplicate rank " + std::to_string(rank) + ": two processes claim it";
    if (error.empty()) {
      peers_[rank] = std::move(s);
      return true;
    }
    send_frame(s, kFailed, error.data(), error.size(), short_deadline());
    fail(error);
  }

  std::vector<int> missing() const {
    std::vector<int> out;
    for (int r = 1; r < env_.world_size; ++r)
      if (!peers_[r].valid()) out.push_back(r);
    return out;
  }

  // Tells every connected rank why, so they fail at once instead of timing out, then throws.
  [[noreturn]] void fail(const std::string& why) {
    const std::string msg = "rendezvous failed at rank 0: " + why;
    for (const Socket& p : peers_)
      if (p.valid()) send_frame(p, kFailed, msg.data(), msg.size(), short_deadline());
    throw DistError(msg);
  }

  static Clock::time_point short_deadline() { return Clock::now() + std::chrono::milliseconds(500); }
  static constexpr std::chrono::seconds kHelloWait{5};

  const DistEnv& env_;
  std::chrono::milliseconds timeout_;
  Clock::time_point deadline_;
  std::vector<Socket> peers_;  // by rank; peers_[0] unused
};

// ---- ranks 1.. ----------------------------------------------------------------------------------
class Client {
 public:
  Client(const DistEnv& env, std::chrono::milliseconds timeout)
      : env_(env), timeout_(timeout), deadline_(Clock::now() + timeout),
        where_(env.master_addr + ":" + std::to_string(env.master_port)) {}

  std::vector<uint8_t> run() {
    std::string last_error = "no attempt";
    const Socket s = tcp::connect_until(env_.master_addr, env_.master_port, deadline_, &last_error);
    if (!s.valid())
      fail("could not reach rank 0 at " + where_ + " within " + seconds(timeout_) + " (last error: " + last_error +
           "); check MASTER_ADDR/MASTER_PORT and that rank 0 started");
    uint8_t hello[16];
    tcp::put_u32(hello, kMagic);
    tcp::put_u32(hello + 4, kVersion);
    tcp::put_u32(hello + 8, uint32_t(env_.world_size));
    tcp::put_u32(hello + 12, uint32_t(env_.rank));
    if (tcp::send_all(s, hello, sizeof(hello), deadline_) != Io::ok) fail("lost the connection to rank 0 at " + where_);
    std::vector<uint8_t> payload = receive(s, "the payload");
    uint8_t ack[8];
    tcp::put_u32(ack, kMagic);
    tcp::put_u32(ack + 4, uint32_t(env_.rank));
    if (tcp::send_all(s, ack, sizeof(ack), deadline_) != Io::ok) fail("lost the connection to rank 0 at " + where_);
    receive(s, "the final barrier");
    return payload;
  }

 private:
  std::vector<uint8_t> receive(const Socket& s, const char* what) {
    uint8_t head[16];
    const Io io = tcp::recv_all(s, head, sizeof(head), deadline_);
    if (io == Io::timeout)
      fail("timed out after " + seconds(timeout_) + " waiting for " + what + " from rank 0 at " + where_ +
           " (connected; other ranks may be missing)");
    if (io != Io::ok) fail("rank 0 at " + where_ + " closed the connection before sending " + what);
    if (tcp::get_u32(head) != kMagic || tcp::get_u32(head + 4) != kVersion)
      fail("the process at " + where_ + " is not a lighthouse rank 0 of this version");
    const uint32_t status = tcp::get_u32(head + 8), n = tcp::get_u32(head + 12);
    if (n > kMaxPayload) fail("rank 0 at " + where_ + " sent a malformed frame");
    std::vector<uint8_t> body(n);
    if (n && tcp::recv_all(s, body.data(), n, deadline_) != Io::ok)
      fail("lost the connection to rank 0 at " + where_ + " while receiving " + what);
    if (status != kOk) fail("rank 0 at " + where_ + " reported: " + std::string(body.begin(), body.end()));
    return body;
  }

  [[noreturn]] void fail(const std::string& why) {
    throw DistError("rendezvous failed at rank " + std::to_string(env_.rank) + ": " + why);
  }

  const DistEnv& env_;
  std::chrono::milliseconds timeout_;
  Clock::time_point deadline_;
  std::string where_;
};

}  // namespace

std::vector<uint8_t> rendezvous_broadcast(const DistEnv& env, const std::vector<uint8_t>& payload,
                                          std::chrono::milliseconds timeout) {
  if (env.world_size <= 1) return payload;
  if (env.rank == 0) return Server(env, timeout).run(payload);
  return Client(env, timeout).run();
}

}  // namespace lh
