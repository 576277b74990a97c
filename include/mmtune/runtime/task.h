// What the trainer needs from a model and from a data pipeline, and nothing more: the trainer
// (train/trainer.h) knows neither the multimodal model nor the ScienceQA/LLaVA readers.
//   TrainTask    the trainable tensors and a training forward that returns summed token losses
//   BatchSource  batches of this rank, epoch after epoch, with a position that resumes exactly
//   LoaderSource a BatchSource over data::DataLoader (include/mmtune/data/loader.h)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include <mmtune/data/batch.h>
#include <mmtune/data/loader.h>

namespace mmtune::runtime {

/// Named tensors, in a fixed order that is the same on every rank.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// The loss of one micro-batch.
struct StepLoss {
  /// Scalar fp32, the SUM of the supervised token losses of this micro-batch (requires grad). The
  /// trainer divides it by the supervised-token count of the whole global batch (all micro-batches
  /// of all ranks), so accumulation and data parallelism give the same gradient.
  torch::Tensor loss_sum;
  /// Auxiliary losses (e.g. MoLE's load balancing), each a scalar already multiplied by its
  /// coefficient and meant per micro-batch (a mean over this micro-batch). The trainer adds each
  /// divided by the number of micro-batches in the global batch (accumulation x world), i.e. the
  /// objective holds their mean over micro-batches. Every forward must return the same names in
  /// the same order on every rank.
  NamedTensors aux;
  /// Statistics to report, not to optimise (e.g. the expert-usage fractions of a routed adapter):
  /// each a detached 1-D float tensor of this micro-batch, of a fixed length per name. The trainer
  /// averages them element-wise over the global batch's micro-batches (all ranks) and writes them
  /// to metrics.jsonl under "stats". Like aux: the same names, lengths and order on every forward
  /// and every rank.
  NamedTensors stats;
};

/// A model as the trainer sees it.
class TrainTask {
 public:
  virtual ~TrainTask() = default;
  /// The tensors the optimiser updates, named as in the model (the adapter checkpoint's keys),
  /// fp32, requires_grad, in the same order on every rank and on every call.
  virtual NamedTensors trainable_parameters() = 0;
  /// Training-mode forward of one micro-batch (the task moves the batch to its device). Never
  /// called with an empty batch: the trainer skips batches of zero rows.
  virtual StepLoss forward(const data::Batch& batch) = 0;
  /// Training (dropout on) or evaluation mode.
  virtual void set_training(bool on) = 0;
};

/// Batches of one rank, epoch after epoch. The position counts this rank's micro-batches: a
/// source seeked to {e, b} yields exactly the batches it would have yielded after taking b
/// batches of epoch e. With a distributed sampler that gives each rank every world-th sample of
/// one global order (data::Sampler), optimiser step k of an epoch sees the same samples whatever
/// the world size, since each step takes one global batch.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// The next batch of the current epoch, or std::nullopt once the epoch is over; the position
  /// then moves to (epoch + 1, 0).
  virtual std::optional<data::Batch> next() = 0;
  /// The position of the batch next() returns next.
  virtual data::LoaderPosition position() const = 0;
  /// Batches of this rank per epoch (all epochs alike).
  virtual int64_t batches_per_epoch() const = 0;
  /// Moves to `pos`; throws mmtune::Error when it is outside the data.
  virtual void seek(data::LoaderPosition pos) = 0;
};

/// A BatchSource over data::DataLoader. seek() builds a new loader at the position through
/// `make` (a DataLoader starts where it is constructed and cannot move).
class LoaderSource : public BatchSource {
 public:
  using Factory = std::function<std::unique_ptr<data::DataLoader>(data::LoaderPosition)>;
  explicit LoaderSource(Factory make, data::LoaderPosition start = {});
  std::optional<data::Batch> next() override { return loader_->next(); }
  data::LoaderPosition position() const override { return loader_->position(); }
  int64_t batches_per_epoch() const override { return loader_->batches_per_epoch(); }
  void seek(data::LoaderPosition pos) override;
  /// Samples the loader dropped (data.on_bad_sample: skip) since the last seek.
  int64_t skipped() const { return loader_->skipped(); }

 private:
  Factory make_;
  std::unique_ptr<data::DataLoader> loader_;
};

}  // namespace mmtune::runtime
