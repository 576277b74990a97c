// AdamW over the trainable tensors only, written out rather than torch::optim::AdamW so that the
// moments are always fp32, the state is exported by parameter name for checkpoints, and the update
// is PyTorch's single-tensor AdamW (torch/optim/adam.py, decoupled_weight_decay, the path PyTorch
// takes for CPU tensors) operation for operation:
//   p    *= 1 - lr * wd                      (decoupled decay; wd = 0 for biases and 1-D tensors)
//   m     = lerp(m, g, 1 - beta1)
//   v     = v * beta2 + (1 - beta2) * g * g
//   p    -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// with t counted per parameter (a parameter without a gradient is skipped and keeps its t).
// Weight-decay groups follow timm (spec §1.8): no decay for names ending in "bias" and for tensors
// of at most one dimension; decay for everything else.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/config/config.h>
#include <mmtune/runtime/task.h>

namespace mmtune::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  /// train.betas, train.eps, train.weight_decay.
  static AdamWOptions from_config(const config::TrainConfig& train);
};

/// True when timm's rule exempts `name` with `shape` from weight decay (bias or <= 1-D).
bool exempt_from_weight_decay(const std::string& name, const torch::Tensor& t);

class AdamW {
 public:
  /// Throws mmtune::Error with a hint for a parameter that is not a floating fp32 tensor, or a
  /// duplicate name. The tensors are shared (updated in place), not copied.
  AdamW(runtime::NamedTensors params, AdamWOptions options);

  /// One update at learning rate `lr` of every parameter that has a gradient.
  void step(double lr);
  /// Drops every gradient (set to undefined, as PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();

  const runtime::NamedTensors& parameters() const { return params_; }
  /// Names of the parameters that decay (the other group does not).
  std::vector<std::string> decayed_names() const;
  /// Updates parameter `name` has received (0 before its first).
  int64_t steps_of(const std::string& name) const;

  /// The state as named tensors for trainer_state.safetensors: "exp_avg.<name>",
  /// "exp_avg_sq.<name>" (fp32, the parameter's shape) and "step.<name>" (int64 scalar) for every
  /// parameter, CPU copies.
  runtime::NamedTensors state_tensors() const;
  /// Restores state_tensors() output (from `path`, named in errors). Every parameter must have its
  /// three entries with the right shapes; every problem is listed in one CheckpointError.
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state,
                          const std::string& path);

 private:
  struct Slot {
    torch::Tensor exp_avg, exp_avg_sq;  // fp32, like the parameter
    int64_t step = 0;
    double weight_decay = 0.0;
  };
  runtime::NamedTensors params_;
  std::vector<Slot> slots_;
  AdamWOptions o_;
};

/// The global L2 norm of the gradients of `params` (PyTorch's clip_grad_norm_: the norm of the
/// per-tensor norms; undefined gradients count as zero). When max_norm > 0 the gradients are
/// scaled by min(1, max_norm / (norm + 1e-6)). Returns the norm before clipping (possibly
/// non-finite: the caller decides to skip the step).
double clip_grad_norm(const runtime::NamedTensors& params, double max_norm);

}  // namespace mmtune::train
