#include <algorithm>
#include <cmath>
#include <numbers>

#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/runtime/schedule.h>

namespace mmtune::runtime {

LrSchedule LrSchedule::from_config(const config::TrainConfig& train, int64_t batches_per_epoch,
                                   int64_t accumulation) {
  if (accumulation <= 0 || batches_per_epoch < accumulation) {
    throw Error(
        cat("an epoch has ", batches_per_epoch,
            " micro-batches per rank, fewer than one optimiser step needs (", accumulation, ")"),
        "use more data, a smaller train.global_batch_size, or more ranks");
  }
  if (train.schedule != "cosine" && train.schedule != "constant") {
    throw Error("unknown train.schedule '" + train.schedule + "'",
                "train.schedule: cosine | constant");
  }
  LrSchedule s;
  s.lr = train.resolved_lr();
  s.min_lr = train.min_lr;
  s.cosine = train.schedule == "cosine";
  const double bpe = static_cast<double>(batches_per_epoch);
  s.warmup_epochs = train.warmup_steps > 0
                        ? static_cast<double>(train.warmup_steps * accumulation) / bpe
                        : train.warmup_epochs;
  s.total_epochs = static_cast<double>(train.epochs);
  const int64_t steps_per_epoch = batches_per_epoch / accumulation;
  if (train.max_steps > 0 && train.max_steps < train.epochs * steps_per_epoch) {
    // The last step of the run ends at this fractional epoch (leftover micro-batches of an epoch
    // that do not fill a step are skipped, so count whole epochs plus the remaining steps).
    const int64_t full = train.max_steps / steps_per_epoch,
                  rest = train.max_steps % steps_per_epoch;
    s.total_epochs = static_cast<double>(full) + static_cast<double>(rest * accumulation) / bpe;
  }
  return s;
}

double LrSchedule::at(double epoch) const {
  if (epoch < warmup_epochs) return lr * epoch / warmup_epochs;
  if (!cosine || total_epochs <= warmup_epochs) return lr;
  const double progress = std::min(1.0, (epoch - warmup_epochs) / (total_epochs - warmup_epochs));
  return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

double fractional_epoch(int64_t epoch, int64_t batches_taken, int64_t batches_per_epoch) {
  return static_cast<double>(epoch) +
         static_cast<double>(batches_taken) / static_cast<double>(batches_per_epoch);
}

}  // namespace mmtune::runtime
