// The output directory of a run: resolved config + log file, set up the same way by every verb
// that writes results (train, eval, bench).
#pragma once

#include <string>

#include <mmtune/config/config.h>

namespace mmtune::config {

/// Creates `config.output_dir`; rank 0 saves the resolved config there (config.yaml, atomically);
/// every rank then also logs to output_dir/mmtune.log (rank r > 0: mmtune.rank<r>.log).
/// Returns the log file's path. Throws mmtune::Error with a hint if the directory is unusable.
std::string prepare_run_dir(const RunConfig& config, int rank);

}  // namespace mmtune::config
