#include <mmtune/runtime/lm_loss.h>
#include <mmtune/runtime/multimodal_task.h>

namespace mmtune::runtime {

MultimodalTask::MultimodalTask(BuiltModel& built, torch::Device device) : built_(built), device_(device) {}

StepLoss MultimodalTask::forward(const data::Batch& batch) {
  adapters::ForwardContext ctx;
  auto& model = *built_.model;
  const auto hidden = model.hidden_states(model_input(batch, device_), nullptr, ctx);  // [B, T, D]
  StepLoss out;
  // the LM head only where a label is (the same sum as lm_loss_sum over the full logits)
  out.loss_sum = lm_loss_sum_from_hidden(hidden, batch.labels, [&model](const torch::Tensor& h) { return model.llm().logits(h); });
  for (auto& [name, value] : ctx.aux_losses)
    out.aux.emplace_back(name, value.to(torch::promote_types(value.scalar_type(), torch::kFloat32)));
  // routed adapters leave "<key>.expert_tokens" ([K] valid tokens per expert) in the state: report
  // them as "<key>.usage" fractions (all zero when the forward had no valid token)
  static const std::string suffix = ".expert_tokens";
  for (const auto& [key, t] : ctx.state) {
    if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const torch::Tensor counts = t.detach().to(torch::kCPU, torch::kFloat64).view({-1});
    const double n = counts.sum().item<double>();
    out.stats.emplace_back(key.substr(0, key.size() - suffix.size()) + ".usage", n > 0 ? counts / n : counts);
  }
  return out;
}

}  // namespace mmtune::runtime
