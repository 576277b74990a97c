#include <mmtune/train/lm_loss.h>
#include <mmtune/train/multimodal_task.h>

namespace mmtune::train {

MultimodalTask::MultimodalTask(BuiltModel& built, torch::Device device) : built_(built), device_(device) {}

StepLoss MultimodalTask::forward(const data::Batch& batch) {
  adapters::ForwardContext ctx;
  const auto logits = built_.model->forward(model_input(batch, device_), nullptr, ctx);  // [B, T, V]
  StepLoss out;
  out.loss_sum = lm_loss_sum(logits, batch.labels);
  for (auto& [name, value] : ctx.aux_losses) out.aux.emplace_back(name, value.to(torch::kFloat32));
  return out;
}

}  // namespace mmtune::train
