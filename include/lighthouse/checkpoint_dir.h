// Crash-safe checkpoint directories.
//
// Layout: run_dir/step_00000100/ (checkpoint_name), complete once it holds "state.json". A
// checkpoint is built in a hidden sibling ".tmp-step_00000100-<pid>-<seq>" and made visible by a
// single rename, so a crash at any point leaves the old complete checkpoint or the new complete
// one, plus at most a stray .tmp-* entry that listing ignores and prune_checkpoints removes.
// state.json is the completeness marker (rather than the directory name alone) so that a
// directory copied in by hand, or half-deleted by something else, is not mistaken for a checkpoint.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lh::ckpt {

// "step_%08d"; throws std::invalid_argument for negative steps.
std::string checkpoint_name(int step);
// Inverse of checkpoint_name: the step when `name` is exactly what checkpoint_name would produce.
std::optional<int> parse_checkpoint_name(const std::string& name);

// A checkpoint being written. The caller writes files into path(), then calls commit().
// Destroying it without commit() removes the temporary directory (e.g. when saving threw).
class StagedDir {
 public:
  // Creates the parent directory if needed and a fresh temporary sibling of final_path.
  explicit StagedDir(const std::string& final_path);
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;

  // The temporary directory before commit(), the final path after it.
  const std::string& path() const { return committed_ ? final_ : tmp_; }
  const std::string& final_path() const { return final_; }
  bool committed() const { return committed_; }

  // fsyncs every file and directory under path(), renames it to final_path() and fsyncs the
  // parent. An existing final_path() (re-saving a step after a resume) is replaced atomically
  // with renameat2(RENAME_EXCHANGE) and the old copy deleted afterwards; on filesystems without
  // RENAME_EXCHANGE the old copy is renamed aside first (a crash in that short window leaves the
  // step's old copy under a .tmp-* name, i.e. the run falls back to the previous checkpoint).
  // Throws std::runtime_error on failure; the temporary directory is then still removed on
  // destruction. Calling commit() twice throws std::logic_error.
  void commit();

 private:
  std::string final_;
  std::string tmp_;
  bool committed_ = false;
};

// Complete checkpoints (name == checkpoint_name(step) and contains a regular file "state.json"),
// sorted by step ascending, as (step, full path). A missing run_dir gives an empty list.
std::vector<std::pair<int, std::string>> list_checkpoints(const std::string& run_dir);
std::optional<std::string> newest_checkpoint(const std::string& run_dir);
// step_* directories without a state.json, as list_checkpoints lists: damaged or hand-edited
// checkpoints (a save writes state.json into its staging directory before the rename), which
// list_checkpoints passes over.
std::vector<std::pair<int, std::string>> incomplete_checkpoints(const std::string& run_dir);

// Keeps the newest keep_last complete checkpoints (0 = keep all) and deletes the older ones; each
// is first renamed to a .tmp-* name so a crash mid-delete never leaves a half-deleted directory
// that still looks complete. Also deletes the stale temporaries a run writes there (checkpoint
// staging directories, config.json and metrics.jsonl in the making): those not in use by this
// process whose owner pid (from the name) is not a live process, or whose name carries no pid.
// Entries of other live processes are left alone (they may be saving right now). Other entries,
// including other .tmp-* names and incomplete step_* directories, are never touched.
void prune_checkpoints(const std::string& run_dir, int keep_last);
// The stale-entry rule above alone, for the .tmp-* entries of `dir` whose final name starts with
// one of `final_prefixes`: what a crashed writer of those names left behind. Entries written
// within `min_age` are left too: where writers on other machines share the directory, a pid that
// is not alive here says nothing about theirs.
void remove_stale_temporaries(const std::string& dir, const std::vector<std::string>& final_prefixes,
                              std::chrono::seconds min_age = std::chrono::seconds(0));

// Whole files (metrics, exported configs, traces, token shards): writes a sibling .tmp-* file of
// this writer's own, fsyncs, renames over `path`, fsyncs the parent. Readers see the old or the new
// contents, never a torn file; writers of one path at once each rename a whole file. The second
// form writes its parts one after another (a header, then a payload) without joining them.
void write_file_atomic(const std::string& path, const std::string& contents);
struct FilePart {
  const void* data;
  size_t bytes;
};
void write_file_atomic(const std::string& path, const std::vector<FilePart>& parts);
// The prefix of the temporary names above (".tmp-"), followed by the final name.
std::string temporary_prefix();

// Holds an exclusive lock on <run_dir>/.lock (created, with run_dir, if missing) for its lifetime,
// so that a second run on the same directory stops instead of interleaving its metrics and
// checkpoints with this one's. Throws std::runtime_error naming the directory when another process
// holds it. Where the lock cannot be taken for another reason (a filesystem without locks),
// problem() says why and the caller decides (train warns and goes on).
// flock(fd, operation), retried when a signal interrupts it: 0, or the errno of the failure
// (EWOULDBLOCK with LOCK_NB when another open file holds the lock).
int flock_retrying(int fd, int operation);

class RunDirLock {
 public:
  explicit RunDirLock(const std::string& run_dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;
  const std::string& problem() const { return problem_; }
  // Whether another process holds the lock now, found without creating anything (dry runs).
  static bool held_elsewhere(const std::string& run_dir);

 private:
  int fd_ = -1;
  std::string problem_;
};

// fsync one file or directory; fsync_tree: every regular file and directory under `dir`
// (children before parents), then `dir` itself.
void fsync_path(const std::string& path);
void fsync_tree(const std::string& dir);

}  // namespace lh::ckpt
