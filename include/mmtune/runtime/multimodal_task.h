// The TrainTask of every adapter family: the built multimodal model (build_model.h) trained on the
// causal-LM objective of data::Batch (lm_loss.h) plus whatever auxiliary losses the adapters push
// during the forward (MoLE's load balancing). The trainer sees only this interface (task.h).
#pragma once

#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/task.h>

namespace mmtune::runtime {

class MultimodalTask : public TrainTask {
 public:
  /// `built` must outlive the task; batches go to `device`.
  MultimodalTask(BuiltModel& built, torch::Device device);

  NamedTensors trainable_parameters() override { return built_.trainable; }
  /// loss_sum = summed token cross-entropy of the supervised positions; aux = the adapters'
  /// ForwardContext::aux_losses (already weighted by their coefficients); stats = one
  /// "<key>.usage" entry (fractions of the valid tokens per expert) for every "<key>.expert_tokens"
  /// count vector a routed adapter left in ForwardContext::state (MoLE: "mole.llm.<layer>.usage").
  StepLoss forward(const data::Batch& batch) override;
  void set_training(bool on) override { built_.model->train(on); }

 private:
  BuiltModel& built_;
  torch::Device device_;
};

}  // namespace mmtune::runtime
