#include <mmtune/adapters/attach.h>
#include <mmtune/core/errors.h>

namespace mmtune::adapters {

std::vector<torch::Tensor> attach_to_llama(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                           const AdapterRegistry& registry) {
  for (auto& p : model.parameters()) p.requires_grad_(false);
  if (adapter.family == "none") return {};
  const FamilyEntry* entry = registry.find(adapter.family);
  if (!entry) throw Error("unknown adapter family '" + adapter.family + "'", "mmtune config keys lists the families");
  if (!entry->make_llm_block) throw Error("adapter family '" + adapter.family + "' has no LLM block adapters yet");
  auto it = adapter.options.find(adapter.family);
  if (it == adapter.options.end()) throw Error("no options for adapter family '" + adapter.family + "'");
  std::vector<torch::Tensor> trainable;
  const int64_t n = model.config().num_layers;
  for (int64_t layer = 0; layer < n; ++layer) {
    auto block = entry->make_llm_block(*it->second, model.block_shape(), layer, n, model.options().device());
    if (!block) continue;
    for (auto& p : block->adapter_parameters()) {
      p.requires_grad_(true);
      trainable.push_back(p);
    }
    model.attach_block_adapter(layer, adapter.family, block);
  }
  return trainable;
}

void set_adapters_enabled(model::LlamaDecoderImpl& model, bool enabled) {
  for (int64_t i = 0; i < model.config().num_layers; ++i) {
    for (auto& a : model.block(i).block_adapters()) a->set_enabled(enabled);
  }
}

}  // namespace mmtune::adapters
