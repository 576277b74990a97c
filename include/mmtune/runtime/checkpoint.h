// Trainer checkpoints: <output_dir>/checkpoint-<step>/ holding
//   adapter_model.safetensors  the trainable tensors by name (fp32)
//   adapter_config.json        the caller's JSON text (the model layer writes it), optional
//   trainer_state.safetensors  optimiser moments and steps (optim.h names), every rank's RNG
//   trainer_state.json         step, fractional epoch, sampler position, schedule, batch layout,
//                              skipped steps, RNG tensor names, the resolved config as YAML
// A checkpoint is written into <output_dir>/.tmp-checkpoint-<step>-<pid>/, every file fsynced,
// then renamed into place (atomically exchanged when that step's directory already exists), so a
// checkpoint-<step> directory is complete by construction; a killed write leaves only a temp
// directory, which resolution ignores and the next save removes. The newest keep_last checkpoints
// are kept.
// Test-only fault injection: MMTUNE_TEST_PAUSE_CHECKPOINT_WRITE=<seconds>[@<step>] sleeps after the
// adapter file of the (given step's) checkpoint is written, so a test can kill the process there.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <torch/torch.h>

#include <mmtune/data/loader.h>
#include <mmtune/runtime/schedule.h>
#include <mmtune/runtime/task.h>

namespace mmtune::runtime {

inline constexpr const char* kTrainerStateTensorsFile = "trainer_state.safetensors";
inline constexpr const char* kTrainerStateJsonFile = "trainer_state.json";
inline constexpr const char* kCheckpointPrefix = "checkpoint-";
inline constexpr const char* kPauseCheckpointEnv = "MMTUNE_TEST_PAUSE_CHECKPOINT_WRITE";

/// Everything of a run that is not a tensor.
struct TrainerState {
  int64_t step = 0;               // optimiser steps done, skipped (non-finite) ones included
  double epoch = 0.0;             // fractional epoch reached
  data::LoaderPosition position;  // the next micro-batch of each rank
  int64_t skipped_steps = 0;
  int64_t world_size = 1;
  int64_t micro_batch_size = 0;
  int64_t global_batch_size = 0;
  int64_t accumulation = 1;
  double lr = 0.0;  // learning rate of the last step
  LrSchedule schedule;
  std::string config_yaml;  // the resolved run config
  uint64_t seed = 0;
};

/// One checkpoint in memory.
struct Checkpoint {
  TrainerState state;
  NamedTensors weights;                          // adapter_model.safetensors
  std::map<std::string, torch::Tensor> tensors;  // trainer_state.safetensors (optimiser + rng.*)
  std::string adapter_config_json;               // empty: no adapter_config.json
  std::string dir;                               // where it was read from / written to
};

/// Writes `ckpt` as <output_dir>/checkpoint-<state.step>/ (see the file comment), removes stale
/// temp directories and all but the newest `keep_last` checkpoints; returns the directory.
/// Throws CheckpointError with a hint on any file-system failure (nothing half-written remains
/// under a checkpoint-<step> name).
std::string save_checkpoint(const std::string& output_dir, const Checkpoint& ckpt,
                            int64_t keep_last);

/// Reads a checkpoint directory (tensors on the CPU). Throws CheckpointError naming the file and
/// what is missing or corrupt, with a hint.
Checkpoint load_checkpoint(const std::string& dir);

/// The step of a ".../checkpoint-<step>" path, or -1 for any other name.
int64_t checkpoint_step(const std::string& dir);

/// True when `dir` holds the three required files and a trainer_state.json that parses.
bool is_complete_checkpoint(const std::string& dir);

/// The complete checkpoint with the highest step in `output_dir`, if any (incomplete ones are
/// skipped with a warning; temp directories are ignored).
std::optional<std::string> find_latest_checkpoint(const std::string& output_dir);

/// `spec` is "latest" (find_latest_checkpoint of output_dir) or a checkpoint directory; throws
/// CheckpointError with a hint when there is none or it is incomplete.
std::string resolve_checkpoint(const std::string& output_dir, const std::string& spec);

/// Removes <output_dir>/.tmp-checkpoint-* left by a killed write; returns how many.
int remove_stale_checkpoint_temps(const std::string& output_dir);

/// The default generators' states as uint8 tensors: "rng.torch_cpu" and, for each initialised
/// CUDA device i, "rng.torch_cuda.<i>"; `suffix` is appended to every name (".rank<r>").
NamedTensors capture_rng_state(const std::string& suffix = "");
/// Restores what capture_rng_state(suffix) captured; returns false (changing nothing) when the
/// CPU entry is absent.
bool restore_rng_state(const std::map<std::string, torch::Tensor>& tensors,
                       const std::string& suffix = "");

}  // namespace mmtune::runtime
