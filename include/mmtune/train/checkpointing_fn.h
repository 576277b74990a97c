// Activation checkpointing for LibTorch, which has no torch.utils.checkpoint: run a callable (a
// frozen block with its adapters) without keeping its activations, and recompute it in backward.
//
// How: a custom torch::autograd::Function whose inputs are the callable's tensor inputs AND the
// trainable tensors it uses (passed explicitly), so the autograd graph has edges to both.
//   forward:  saves the inputs (save_for_backward: an in-place change before backward is caught),
//             the CPU generator state (and the CUDA one of the inputs' device) and the autocast
//             state, then runs the callable with grad disabled: only the outputs are kept.
//   backward: on detached copies of the inputs (requires_grad as the originals), with the saved
//             RNG and autocast state restored (then set back), re-runs the callable with grad
//             enabled and returns torch::autograd::grad of the outputs w.r.t. inputs + trainables.
//             The engine accumulates those into the trainables' .grad like any other edge, so
//             gradients equal the uncheckpointed ones (same ops, same order).
// Limits (each checked where it can be):
//   - every tensor the callable uses that requires grad must be in `params`: backward walks the
//     recomputed graph and throws if a leaf requiring grad is neither an input nor in `params`
//     (its gradient would otherwise be lost);
//   - the callable runs twice: side effects (e.g. state stored in modules) happen twice, so it must
//     be a pure function of its inputs, the parameters and the RNG;
//   - the callable is kept until backward: capture by value (module holders are shared pointers),
//     never references to locals;
//   - outputs must be tensors; integer outputs are returned but carry no gradient;
//   - randomness from generators other than the default CPU/CUDA ones is not replayed;
//   - no double backward (create_graph) through a checkpointed region.
// Under no-grad, or when nothing requires grad, the callable simply runs once.
#pragma once

#include <mmtune/model/multimodal.h>

#include <functional>
#include <vector>

#include <torch/torch.h>

namespace mmtune::train {

using CheckpointFn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

/// Runs `fn(inputs)` checkpointed (see the file comment). `params`: the tensors requiring grad
/// that `fn` uses besides its inputs (e.g. trainable_tensors(block)); frozen ones may be included
/// and are ignored. Returns fn's outputs.
std::vector<torch::Tensor> checkpoint(const CheckpointFn& fn,
                                      const std::vector<torch::Tensor>& inputs,
                                      const std::vector<torch::Tensor>& params);

/// One tensor in, one out.
torch::Tensor checkpoint(const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& input, const std::vector<torch::Tensor>& params);

/// Makes every frozen LLM block of `model` run checkpointed during training (train.
/// activation_checkpointing): activations inside a block are recomputed in backward instead of kept.
/// Adapters whose per-forward state flows from block to block with gradients (MoLE's balancing
/// statistics) cannot be checkpointed this way; run_training refuses that combination.
void enable_activation_checkpointing(model::MultimodalLMImpl& model);

/// The parameters of `module` (recursively) that require grad.
std::vector<torch::Tensor> trainable_tensors(const torch::nn::Module& module);

}  // namespace mmtune::train
