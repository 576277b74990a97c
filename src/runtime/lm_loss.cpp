#include <mmtune/runtime/lm_loss.h>

namespace mmtune::runtime {

torch::Tensor lm_loss_sum(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t V = logits.size(-1);
  // logits[:, :-1] predict labels[:, 1:]: [B * (T - 1), V] vs [B * (T - 1)]
  // the loss in fp32 (fp64 for an fp64 model: the numerical checks)
  const torch::Tensor pred = logits.narrow(1, 0, logits.size(1) - 1).reshape({-1, V}).to(
      torch::promote_types(logits.scalar_type(), torch::kFloat32));
  const torch::Tensor target = labels.narrow(1, 1, labels.size(1) - 1).reshape({-1}).to(logits.device());
  return torch::nn::functional::cross_entropy(
      pred, target,
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(data::kIgnoreIndex).reduction(torch::kSum));
}

torch::Tensor lm_loss_sum_from_hidden(const torch::Tensor& hidden, const torch::Tensor& labels,
                                      const std::function<torch::Tensor(const torch::Tensor&)>& head) {
  const int64_t T = hidden.size(1), D = hidden.size(-1);
  // position t predicts labels[t + 1]: rows of the supervised ones among [B * (T - 1)]
  const torch::Tensor target = labels.narrow(1, 1, T - 1).reshape({-1}).to(hidden.device());
  const torch::Tensor rows = (target != data::kIgnoreIndex).nonzero().squeeze(1);  // [N]
  const torch::Tensor h = hidden.narrow(1, 0, T - 1).reshape({-1, D}).index_select(0, rows);  // [N, D]
  return torch::nn::functional::cross_entropy(
      head(h).to(torch::promote_types(h.scalar_type(), torch::kFloat32)), target.index_select(0, rows),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
}

model::MultimodalInput model_input(const data::Batch& b, const torch::Device& device) {
  model::MultimodalInput in;
  in.tokens = b.tokens.to(device);
  if (b.attention_mask.defined()) in.attention_mask = b.attention_mask.to(device);
  if (b.image_slots.defined()) in.image_slots = b.image_slots.to(device);
  if (b.images.defined()) in.images = b.images.to(device);
  if (b.has_image.defined()) in.has_image = b.has_image.to(device);
  return in;
}

}  // namespace mmtune::runtime
