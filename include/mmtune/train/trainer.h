// The training loop, independent of the model (a runtime::TrainTask) and the data (a runtime::BatchSource).
//
// One optimiser step takes one global batch: train.global_batch_size samples, accumulation =
// global / (micro_batch_size x world) micro-batches on each rank (an error when not divisible).
// The objective of a step is the token mean over the whole global batch:
//   1. take this rank's micro-batches of the step, all-reduce their supervised-token count;
//   2. each micro-batch backwards loss_sum / global_tokens (+ each aux loss / micro-batches in the
//      global batch), so 2 ranks x b equals 1 rank x 2 accumulations x b;
//   3. sum the gradients over ranks (GradSync), clip (train.clip_grad), AdamW step at the LR of
//      the schedule for the step's fractional epoch (per-iteration warm-up + cosine).
// A step whose loss or gradient norm is not finite is skipped (no update, counted, warned, as LaVIN
// skips NaN batches); every rank sees the same all-reduced values, so all skip together. Micro-
// batches left at an epoch's end that cannot fill a step are dropped. Checkpoints every
// train.save_every steps (0: at each epoch's end) and at the end; train.max_steps caps the run.
// Only rank 0 writes files (metrics.jsonl, checkpoints); every rank reads a checkpoint to resume,
// so output_dir must be visible to all ranks. Resume restores weights, optimiser moments and
// steps, the sampler position, each rank's RNG states and the skip count: on CPU in fp32 the
// losses after a resume are bitwise those of an uninterrupted run.
// bf16: train.precision bf16 runs runtime::TrainTask::forward under autocast (cfg.device's type); master
// weights, gradients and moments stay fp32.
// A fresh run seeds torch's generators with seed + rank (LaVIN) when train() starts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/runtime/checkpoint.h>
#include <mmtune/runtime/distributed.h>
#include <mmtune/train/grad_sync.h>
#include <mmtune/train/metrics.h>
#include <mmtune/train/optim.h>
#include <mmtune/runtime/schedule.h>
#include <mmtune/runtime/task.h>

namespace mmtune::train {

struct TrainerHooks {
  /// adapter_config.json text stored in every checkpoint (called on rank 0 at each save); unset:
  /// no adapter_config.json.
  std::function<std::string()> adapter_config_json;
  /// Called on every rank after each optimiser step.
  std::function<void(const StepMetrics&)> on_step;
};

struct TrainResult {
  int64_t steps = 0;            // optimiser steps done, resumed ones included
  int64_t skipped_steps = 0;    // of those, skipped as non-finite
  std::vector<double> losses;   // per step of this call (NaN for skipped steps)
  std::string last_checkpoint;  // rank 0: the last checkpoint written; empty elsewhere
};

class Trainer {
 public:
  /// Reads cfg.train, cfg.dist, cfg.output_dir, cfg.seed, cfg.device; `pg` null = one process.
  /// Throws mmtune::Error with a hint: global batch not divisible by micro x world, nothing
  /// trainable, an epoch shorter than one step, a non-fp32 trainable tensor.
  Trainer(runtime::TrainTask& task, runtime::BatchSource& data, const config::RunConfig& cfg,
          runtime::ProcessGroup* pg = nullptr, TrainerHooks hooks = {});

  /// Restores everything from a checkpoint directory (see runtime::resolve_checkpoint for "latest") before
  /// train(). The schedule comes from the current config (a warning when it differs from the
  /// checkpoint's); another world size or micro-batch is allowed (same samples per step, not
  /// bitwise the same losses). Throws CheckpointError when the weights or the optimiser state do
  /// not fit the task, or train.global_batch_size changed.
  void resume(const std::string& checkpoint_dir);
  /// Batches for the validation loss every train.eval_every steps (reported as val_loss).
  void set_validation(runtime::BatchSource* val) { val_ = val; }

  /// Runs until total_steps(). Throws Interrupted on Ctrl-C (after saving a checkpoint), and
  /// mmtune::Error when a collective fails (a dead rank) or the data source fails.
  TrainResult train();
  /// Collective (every rank calls it): rank 0 writes checkpoint-<step>; returns its path there.
  std::string save();

  int64_t accumulation() const { return accumulation_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t total_steps() const { return total_steps_; }
  const runtime::TrainerState& state() const { return state_; }
  const runtime::LrSchedule& schedule() const { return state_.schedule; }

 private:
  /// This rank's micro-batches of the next step; returns the position of the first.
  data::LoaderPosition take_step_batches(std::vector<data::Batch>& out);
  /// One optimiser step over this rank's micro-batches: accumulate, reduce across ranks, update.
  StepMetrics run_step(std::vector<data::Batch>& micro, double lr, double global_tokens);
  struct StepSums;  // this rank's sums over the micro-batches of one step (trainer.cpp)
  /// Forward + backward of each micro-batch (gradients accumulate); the loss, aux and stat sums.
  StepSums accumulate(std::vector<data::Batch>& micro, double global_tokens, double n_micro);
  /// Sums of every rank into m.loss / m.aux / m.stats; false when one is not finite.
  bool reduce_sums(const StepSums& sums, double global_tokens, double n_micro, StepMetrics& m);
  /// Gradient all-reduce, clipping (m.grad_norm) and the optimiser step, unless a value is not finite.
  void update(bool finite, double lr, StepMetrics& m);
  /// resume(): the saved weights into the trainable parameters, after checking they fit them.
  void restore_weights(const runtime::Checkpoint& c, const std::string& checkpoint_dir);
  /// resume(): the saved run's settings against this one (errors, or warnings where it can go on).
  void check_resumable(const runtime::TrainerState& s, const std::string& checkpoint_dir) const;
  std::vector<double> all_reduce(std::vector<double> values, const std::string& what);
  double validation_loss();
  void drain_epoch_if_short();
  bool is_rank0() const { return rank_ == 0; }

  runtime::TrainTask& task_;
  runtime::BatchSource& data_;
  runtime::BatchSource* val_ = nullptr;
  const config::RunConfig cfg_;  // a copy: the caller's may go away
  runtime::ProcessGroup* pg_;
  TrainerHooks hooks_;
  int rank_ = 0, world_ = 1;
  int64_t accumulation_ = 1, steps_per_epoch_ = 0, total_steps_ = 0;
  runtime::NamedTensors params_;
  std::unique_ptr<AdamW> optim_;
  std::unique_ptr<GradSync> sync_;
  runtime::TrainerState state_;
  bool resumed_ = false;
  int64_t last_saved_step_ = -1;
  std::string last_checkpoint_;
  torch::Device device_{torch::kCPU};
};

}  // namespace mmtune::train
