// `mmtune train` without the command line: config -> process group -> frozen model + adapters ->
// data of this rank -> Trainer -> checkpoints in output_dir. Every adapter family goes through
// here (the task is runtime::MultimodalTask); the data set through data::read_split.
#pragma once

#include <cstdint>
#include <string>

#include <mmtune/config/config.h>
#include <mmtune/train/trainer.h>

namespace mmtune::train {

struct TrainRunOptions {
  std::string resume;  // "" = a fresh run; "latest" = the newest checkpoint in output_dir; or a directory
  bool overwrite = false;  // a fresh run may delete an earlier run's checkpoints in output_dir (else refused)
};

struct TrainRunSummary {
  TrainResult result;
  int64_t samples = 0;          // training samples of the split (after skips)
  int64_t skipped_samples = 0;  // dropped by data.on_bad_sample: skip (reading + collating, this rank)
  int64_t truncated_samples = 0;  // rows cut at data.max_length (this rank)
  int64_t trainable_parameters = 0;
  double seconds = 0;
};

/// Runs a whole training job as configured. Launched under torchrun (RANK / WORLD_SIZE set) it
/// joins the process group (dist.backend, dist.timeout_s) and trains its share; device "cuda"
/// then means cuda:LOCAL_RANK. Rank 0 holds config::RunDirLock on output_dir for the whole run and
/// refuses a fresh run into a directory holding an earlier one (config::claim_run_dir). Throws mmtune::Error with a hint for every bad input (config, files,
/// data, a dead rank), Interrupted on Ctrl-C after saving a checkpoint.
TrainRunSummary run_training(const config::RunConfig& cfg, const TrainRunOptions& options);

}  // namespace mmtune::train
