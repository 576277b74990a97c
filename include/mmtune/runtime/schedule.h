// The learning rate per optimiser step (LaVIN / MAE's adjust_learning_rate, spec §1.8): set at each
// accumulation boundary from a fractional epoch e = epoch + micro-batches taken / micro-batches
// per epoch, with p = (e - warmup) / (total - warmup):
//   e <  warmup:  lr * e / warmup                           (linear, from 0)
//   e >= warmup:  cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2
//                 constant: lr
// lr is train.lr, or train.blr * global_batch_size / 256. warmup_steps (optimiser steps) is
// converted to epochs, so both forms share the formula; with train.max_steps the cosine ends where
// the run ends instead of at train.epochs.
#pragma once

#include <cstdint>

#include <mmtune/config/config.h>

namespace mmtune::runtime {

struct LrSchedule {
  double lr = 0.0;             // peak (after warm-up)
  double min_lr = 0.0;         // cosine floor
  double warmup_epochs = 0.0;  // fractional epochs of linear warm-up
  double total_epochs = 1.0;   // where the cosine reaches min_lr
  bool cosine = true;          // false: constant lr after warm-up

  /// The schedule of `train` for a run with `batches_per_epoch` micro-batches per epoch on each
  /// rank and `accumulation` micro-batches per optimiser step. Throws mmtune::Error (with a hint)
  /// when an epoch has fewer micro-batches than one optimiser step needs, or the schedule name is
  /// unknown.
  static LrSchedule from_config(const config::TrainConfig& train, int64_t batches_per_epoch,
                                int64_t accumulation);

  /// The learning rate at fractional epoch `epoch` (>= 0).
  double at(double epoch) const;
};

/// epoch + batches_taken / batches_per_epoch: where in the run an optimiser step starts.
double fractional_epoch(int64_t epoch, int64_t batches_taken, int64_t batches_per_epoch);

}  // namespace mmtune::runtime
