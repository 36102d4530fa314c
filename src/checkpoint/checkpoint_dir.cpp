// Crash-safe checkpoint directories; the guarantees are described in checkpoint_dir.h.
#include "lighthouse/checkpoint_dir.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>
#include <stdexcept>

#include "checkpoint/posix_io.h"

namespace fs = std::filesystem;

namespace lh::ckpt {
namespace {

const std::string kTmpPrefix = ".tmp-";

// Temporary names this process currently uses. prune_checkpoints must not delete them, and the pid
// in the name is not enough: in containers a restarted run often gets the same pid as its dead
// predecessor, whose leftovers must still be cleaned.
std::mutex g_live_mutex;
std::set<std::string> g_live;

void mark_live(const std::string& name, bool live) {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  if (live)
    g_live.insert(name);
  else
    g_live.erase(name);
}
bool is_live(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  return g_live.count(name) != 0;
}

// ".tmp-<base>-<pid>-<seq>": unique within the process (seq) and across processes (pid).
std::string tmp_name(const std::string& base) {
  static std::atomic<unsigned long> seq{0};
  return kTmpPrefix + base + "-" + std::to_string(::getpid()) + "-" + std::to_string(seq++);
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Owner pid of a .tmp-* name: the second-to-last '-' field when numeric (our own format), else the
// last one (e.g. ".tmp-step_00000200-1234" from older/other writers); -1 when there is none.
long owner_pid(const std::string& name) {
  std::vector<std::string> f;
  size_t start = kTmpPrefix.size();
  for (size_t p; (p = name.find('-', start)) != std::string::npos; start = p + 1)
    f.push_back(name.substr(start, p - start));
  f.push_back(name.substr(start));
  const std::string* cand = nullptr;
  if (f.size() >= 3 && all_digits(f[f.size() - 2]) && all_digits(f.back())) cand = &f[f.size() - 2];
  else if (f.size() >= 2 && all_digits(f.back())) cand = &f.back();
  if (!cand || cand->size() > 9) return -1;
  return std::stol(*cand);
}

bool process_alive(long pid) {
  if (pid <= 0) return false;
  // EPERM means it exists but belongs to someone else: still alive.
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

std::string parent_of(const std::string& path) {
  const fs::path p = fs::path(path).parent_path();
  return p.empty() ? std::string(".") : p.string();
}

void rename_or_throw(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw std::runtime_error("cannot rename '" + from + "' to '" + to + "': " +
                             std::strerror(errno));
}

}  // namespace

std::string checkpoint_name(int step) {
  if (step < 0) throw std::invalid_argument("checkpoint step must be >= 0, got " +
                                            std::to_string(step));
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08d", step);
  return buf;
}

std::optional<int> parse_checkpoint_name(const std::string& name) {
  if (name.rfind("step_", 0) != 0) return std::nullopt;
  const std::string digits = name.substr(5);
  if (!all_digits(digits) || digits.size() > 10) return std::nullopt;
  const long long v = std::stoll(digits);
  if (v > INT32_MAX || checkpoint_name(static_cast<int>(v)) != name) return std::nullopt;
  return static_cast<int>(v);
}

void fsync_path(const std::string& path) {
  detail::Fd fd = detail::open_or_throw(path, O_RDONLY);
  detail::fsync_fd(fd.get(), path);
  fd.close_checked(path);
}

void fsync_tree(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory() && !e.is_symlink())
      fsync_tree(e.path().string());
    else if (e.is_regular_file())
      fsync_path(e.path().string());
  }
  fsync_path(dir);
}

StagedDir::StagedDir(const std::string& final_path) : final_(final_path) {
  const std::string parent = parent_of(final_);
  fs::create_directories(parent);
  const std::string base = fs::path(final_).filename().string();
  if (base.empty()) throw std::invalid_argument("StagedDir: final path '" + final_ + "' has no name");
  for (;;) {  // mkdir fails on an existing name, so a leftover never gets reused by accident
    const std::string name = tmp_name(base);
    tmp_ = (fs::path(parent) / name).string();
    if (::mkdir(tmp_.c_str(), 0755) == 0) {
      mark_live(name, true);
      return;
    }
    if (errno != EEXIST) detail::throw_errno("cannot create directory", tmp_, errno);
  }
}

StagedDir::~StagedDir() {
  if (committed_) return;
  std::error_code ec;  // destructors must not throw; a leftover is cleaned by prune_checkpoints
  fs::remove_all(tmp_, ec);
  mark_live(fs::path(tmp_).filename().string(), false);
}

void StagedDir::commit() {
  if (committed_) throw std::logic_error("StagedDir::commit called twice for '" + final_ + "'");
  // Data must be durable before the rename makes it visible, else a power loss could expose a
  // complete-looking checkpoint with empty files.
  fsync_tree(tmp_);
  const std::string parent = parent_of(final_);
  std::string old;  // where the replaced checkpoint ends up, to delete after the switch
  struct stat st {};
  if (::lstat(final_.c_str(), &st) != 0) {
    rename_or_throw(tmp_, final_);
  } else if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) == 0) {
    old = tmp_;  // the exchange left the old checkpoint under our temporary name
  } else if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
    old = (fs::path(parent) / tmp_name("old-" + fs::path(final_).filename().string())).string();
    rename_or_throw(final_, old);
    rename_or_throw(tmp_, final_);
  } else {
    detail::throw_errno("cannot exchange '" + tmp_ + "' with", final_, errno);
  }
  committed_ = true;
  mark_live(fs::path(tmp_).filename().string(), false);
  fsync_path(parent);  // make the rename itself durable
  if (!old.empty()) {
    std::error_code ec;  // the new checkpoint is already in place; a leftover is only clutter
    fs::remove_all(old, ec);
  }
}

namespace {
// step_* directories with (complete) or without a state.json, by step ascending.
std::vector<std::pair<int, std::string>> step_directories(const std::string& run_dir, bool complete) {
  std::vector<std::pair<int, std::string>> out;
  if (!fs::exists(run_dir)) return out;
  for (const auto& e : fs::directory_iterator(run_dir)) {
    const auto step = parse_checkpoint_name(e.path().filename().string());
    if (!step || !e.is_directory()) continue;
    std::error_code ec;
    if (fs::is_regular_file(e.path() / "state.json", ec) == complete) out.emplace_back(*step, e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::vector<std::pair<int, std::string>> list_checkpoints(const std::string& run_dir) {
  return step_directories(run_dir, /*complete=*/true);
}

std::vector<std::pair<int, std::string>> incomplete_checkpoints(const std::string& run_dir) {
  return step_directories(run_dir, /*complete=*/false);
}

std::optional<std::string> newest_checkpoint(const std::string& run_dir) {
  const auto all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

void prune_checkpoints(const std::string& run_dir, int keep_last) {
  if (keep_last < 0) throw std::invalid_argument("prune_checkpoints: keep_last must be >= 0");
  if (!fs::exists(run_dir)) return;
  const auto all = list_checkpoints(run_dir);
  if (keep_last > 0 && all.size() > static_cast<size_t>(keep_last)) {
    const size_t n_remove = all.size() - static_cast<size_t>(keep_last);
    for (size_t i = 0; i < n_remove; ++i) {
      // Rename first: once out of the step_* namespace it can never be listed half-deleted.
      const std::string doomed =
          (fs::path(run_dir) / tmp_name("del-" + checkpoint_name(all[i].first))).string();
      rename_or_throw(all[i].second, doomed);
      fs::remove_all(doomed);
    }
    fsync_path(run_dir);
  }
  // Only the names a run writes here: a checkpoint's staging directory, the old copy a re-save
  // swaps out, a pruned one on its way out, and the run's own files. Other .tmp-* entries (the
  // user's) are never touched.
  remove_stale_temporaries(run_dir, {"step_", "old-step_", "del-step_", "config.json", "metrics.jsonl"});
}

void remove_stale_temporaries(const std::string& dir, const std::vector<std::string>& final_prefixes,
                              std::chrono::seconds min_age) {
  if (!fs::is_directory(dir)) return;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    const bool ours = std::any_of(final_prefixes.begin(), final_prefixes.end(), [&](const std::string& prefix) {
      return name.rfind(kTmpPrefix + prefix, 0) == 0;
    });
    if (!ours || is_live(name)) continue;
    std::error_code ec;
    const auto written = fs::last_write_time(e.path(), ec);
    if (ec || fs::file_time_type::clock::now() - written < min_age) continue;
    const long pid = owner_pid(name);
    if (pid == static_cast<long>(::getpid()) || !process_alive(pid)) fs::remove_all(e.path());
  }
}

std::string temporary_prefix() { return kTmpPrefix; }

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_file_atomic(path, {{contents.data(), contents.size()}});
}

void write_file_atomic(const std::string& path, const std::vector<FilePart>& parts) {
  const std::string parent = parent_of(path);
  fs::create_directories(parent);
  // The pid and sequence number make the name unique on one machine; where another machine's
  // writer (same pid, shared filesystem) took it, the next number is tried.
  std::string name, tmp;
  detail::Fd fd;
  for (int attempt = 0;; ++attempt) {
    name = tmp_name(fs::path(path).filename().string());
    tmp = (fs::path(parent) / name).string();
    const int raw = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (raw >= 0) {
      fd = detail::Fd(raw);
      break;
    }
    if (errno != EEXIST || attempt == 100) detail::throw_errno("cannot create", tmp, errno);
  }
  mark_live(name, true);
  try {
    for (const FilePart& part : parts) detail::write_all(fd.get(), part.data, part.bytes, tmp);
    detail::fsync_fd(fd.get(), tmp);
    fd.close_checked(tmp);
    rename_or_throw(tmp, path);
  } catch (...) {
    ::unlink(tmp.c_str());
    mark_live(name, false);
    throw;
  }
  mark_live(name, false);
  fsync_path(parent);
}

}  // namespace lh::ckpt
