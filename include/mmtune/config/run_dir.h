// The output directory of a run: resolved config + log file, set up the same way by every verb
// that writes results (train, eval, bench); and what keeps two training runs out of one directory.
#pragma once

#include <string>
#include <vector>

#include <mmtune/config/config.h>

namespace mmtune::config {

/// Creates `config.output_dir`; rank 0 saves the resolved config there (config.yaml, atomically);
/// every rank then also logs to output_dir/mmtune.log (rank r > 0: mmtune.rank<r>.log).
/// Returns the log file's path. Throws mmtune::Error with a hint if the directory is unusable.
std::string prepare_run_dir(const RunConfig& config, int rank);

/// An exclusive advisory lock (flock) on <dir>/.mmtune.lock, held while the object lives and
/// released by the kernel when the process ends however it ends (kill -9 included). A second
/// training run into the same output_dir fails at once with the holder's pid instead of
/// interleaving metrics lines and checkpoints. Creates `dir` when missing.
class RunDirLock {
 public:
  /// Throws mmtune::Error naming the directory (and the pid holding it) when it is locked.
  explicit RunDirLock(const std::string& dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

 private:
  int fd_ = -1;
};

/// What an earlier training run left in `dir`: its checkpoint-<step> directories (complete or
/// half-written) and a non-empty metrics.jsonl, as file names, sorted; empty for a fresh directory.
std::vector<std::string> previous_run_entries(const std::string& dir);

/// Makes `dir` ready for a training run. Resuming: nothing to check. A fresh run into a directory
/// that holds an earlier run (previous_run_entries) is refused (UsageError naming the directory and
/// what is there, hint: --resume, another output_dir, or --overwrite), since keep_last would delete
/// the new checkpoints before the old ones and a later --resume or eval would pick up the old run;
/// with `overwrite` those entries are deleted first (logged). Call on rank 0, under a RunDirLock.
void claim_run_dir(const std::string& dir, bool resuming, bool overwrite);

}  // namespace mmtune::config
