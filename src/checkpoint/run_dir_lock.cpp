// One run per run directory: an exclusive flock on <run_dir>/.lock held while the run trains.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "lighthouse/checkpoint_dir.h"

namespace lh::ckpt {

int flock_retrying(int fd, int operation) {
  int rc;
  do rc = ::flock(fd, operation);
  while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
}

RunDirLock::RunDirLock(const std::string& run_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) throw std::runtime_error("logging.dir " + run_dir + " cannot be created: " + ec.message());
  const std::string path = (std::filesystem::path(run_dir) / ".lock").string();
  // Close-on-exec: a child process (a launcher's rank, a test's) must not inherit the lock.
  fd_ = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    problem_ = path + ": cannot open (" + std::strerror(errno) + ")";
    return;
  }
  int err = flock_retrying(fd_, LOCK_EX | LOCK_NB);
  if (err == EWOULDBLOCK) {  // held_elsewhere (a dry run's probe) holds it for an instant: look again
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    err = flock_retrying(fd_, LOCK_EX | LOCK_NB);
  }
  if (err == 0) return;
  ::close(fd_);
  fd_ = -1;
  if (err == EWOULDBLOCK)
    throw std::runtime_error("run directory " + run_dir + " is in use by another run (it holds " + path +
                             "); two runs in one logging.dir would interleave their metrics and checkpoints");
  problem_ = path + ": cannot lock (" + std::strerror(err) + ")";  // e.g. a filesystem without locks
}

bool RunDirLock::held_elsewhere(const std::string& run_dir) {
  const std::string path = (std::filesystem::path(run_dir) / ".lock").string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // no lock file: nobody has run there (or it is unreadable: the run says so)
  const bool held = flock_retrying(fd, LOCK_EX | LOCK_NB) == EWOULDBLOCK;
  ::close(fd);  // releases the lock if this call took it
  return held;
}

RunDirLock::~RunDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace lh::ckpt
