// The causal-LM objective over a data::Batch: position t predicts labels[t + 1]; positions labelled
// kIgnoreIndex (prompt, image slots, padding) do not count (spec §1.5).
#pragma once

#include <functional>

#include <torch/torch.h>

#include <mmtune/data/batch.h>
#include <mmtune/model/multimodal.h>

namespace mmtune::runtime {

/// Sum of token cross-entropies (fp32 scalar): logits [B, T, V] vs labels [B, T] shifted by one.
/// Dividing by the supervised-token count of the whole global batch gives the mean the trainer uses.
torch::Tensor lm_loss_sum(const torch::Tensor& logits, const torch::Tensor& labels);

/// The same sum from the final hidden states [B, T, D]: `head` (hidden [N, D] -> logits [N, V],
/// e.g. LlamaDecoderImpl::logits) runs only at the N positions whose next label is supervised, so
/// training never builds the [B, T, V] logits of prompt, image and padding positions.
torch::Tensor lm_loss_sum_from_hidden(const torch::Tensor& hidden, const torch::Tensor& labels,
                                      const std::function<torch::Tensor(const torch::Tensor&)>& head);

/// The model's view of a batch (tensors moved to `device`).
model::MultimodalInput model_input(const data::Batch& batch, const torch::Device& device);

}  // namespace mmtune::runtime
