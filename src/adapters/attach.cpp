#include <mmtune/adapters/attach.h>
#include <mmtune/core/errors.h>

namespace mmtune::adapters {

namespace {

const FamilyEntry* family_entry(const config::AdapterConfig& adapter, const AdapterRegistry& registry,
                                const config::FamilyConfig** options) {
  if (adapter.family == "none") return nullptr;
  const FamilyEntry* entry = registry.find(adapter.family);
  if (!entry) throw Error("unknown adapter family '" + adapter.family + "'", "mmtune config keys lists the families");
  auto it = adapter.options.find(adapter.family);
  if (it == adapter.options.end()) throw Error("no options for adapter family '" + adapter.family + "'");
  *options = it->second.get();
  return entry;
}

std::vector<torch::Tensor> collect_trainable(const std::shared_ptr<torch::nn::Module>& m, std::vector<torch::Tensor>& out) {
  for (auto& p : m->parameters()) {
    p.requires_grad_(true);
    out.push_back(p);
  }
  return out;
}

}  // namespace

std::vector<torch::Tensor> attach_to_llama(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                           const AdapterRegistry& registry) {
  for (auto& p : model.parameters()) p.requires_grad_(false);
  const config::FamilyConfig* options = nullptr;
  const FamilyEntry* entry = family_entry(adapter, registry, &options);
  std::vector<torch::Tensor> trainable;
  if (!entry) return trainable;
  if (!entry->make_llm_block) {
    if (entry->make_decoder || entry->make_decoder_for) return trainable;  // decoder-level only (IAA)
    throw Error("adapter family '" + adapter.family + "' has no LLM block adapters yet");
  }
  const int64_t n = model.config().num_layers;
  for (int64_t layer = 0; layer < n; ++layer) {
    auto block = entry->make_llm_block(*options, model.block_shape(), layer, n, model.options().device());
    if (!block) continue;
    collect_trainable(block, trainable);
    model.attach_block_adapter(layer, adapter.family, block);
  }
  return trainable;
}

std::vector<torch::Tensor> attach_to_vision(model::ClipVisionTransformerImpl& vit, const config::AdapterConfig& adapter,
                                            const AdapterRegistry& registry) {
  for (auto& p : vit.parameters()) p.requires_grad_(false);
  const config::FamilyConfig* options = nullptr;
  const FamilyEntry* entry = family_entry(adapter, registry, &options);
  std::vector<torch::Tensor> trainable;
  if (!entry || !entry->make_vision_block) return trainable;
  const int64_t n = vit.config().num_layers;
  const auto device = vit.parameters().empty() ? torch::Device(torch::kCPU) : vit.parameters().front().device();
  for (int64_t layer = 0; layer < n; ++layer) {
    auto block = entry->make_vision_block(*options, vit.block_shape(), layer, n, device);
    if (!block) continue;
    collect_trainable(block, trainable);
    vit.attach_block_adapter(layer, adapter.family, block);
  }
  return trainable;
}

std::vector<torch::Tensor> attach_decoder(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                          const VisualPath& visual, const AdapterRegistry& registry) {
  const config::FamilyConfig* options = nullptr;
  const FamilyEntry* entry = family_entry(adapter, registry, &options);
  std::vector<torch::Tensor> trainable;
  if (!entry || (!entry->make_decoder && !entry->make_decoder_for)) return trainable;
  const std::string name = entry->decoder_name ? entry->decoder_name(*options) : adapter.family;
  for (const auto& [attached, a] : decoder_adapters(model)) {
    if (attached == name) {
      throw Error("a decoder adapter named '" + name + "' is already attached",
                  "each adapter of one family needs its own name (IAA: adapter.iaa.workflow)");
    }
  }
  auto d = entry->make_decoder_for
               ? entry->make_decoder_for(*options, model, visual)
               : entry->make_decoder(*options, model.config().hidden_size, visual.width, visual.projector_hidden,
                                     model.options().device());
  if (!d) return trainable;
  // only what the adapter trains: IAA's stage 1 keeps its copied layers, embedding and head frozen
  for (auto& p : d->adapter_parameters()) {
    p.requires_grad_(true);
    trainable.push_back(p);
  }
  model.attach_decoder_adapter(name, d);
  return trainable;
}

std::vector<torch::Tensor> attach_decoder(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                          int64_t vision_width, int64_t projector_hidden, const AdapterRegistry& registry) {
  return attach_decoder(model, adapter, VisualPath{vision_width, "", projector_hidden}, registry);
}

std::vector<std::pair<std::string, std::shared_ptr<DecoderAdapterImpl>>> decoder_adapters(model::LlamaDecoderImpl& model) {
  std::vector<std::pair<std::string, std::shared_ptr<DecoderAdapterImpl>>> out;
  // the decoder registers its decoder adapters in a ModuleDict child "adapters", in attach order
  for (const auto& child : model.named_children()) {
    auto dict = std::dynamic_pointer_cast<torch::nn::ModuleDictImpl>(child.value());
    if (child.key() != "adapters" || !dict) continue;
    for (const auto& [name, m] : dict->items()) {
      if (auto d = std::dynamic_pointer_cast<DecoderAdapterImpl>(m)) out.emplace_back(name, d);
    }
  }
  return out;
}

void set_adapters_enabled(model::LlamaDecoderImpl& model, bool enabled) {
  for (int64_t i = 0; i < model.config().num_layers; ++i) {
    for (auto& a : model.block(i).block_adapters()) a->set_enabled(enabled);
  }
}

void set_decoder_adapters_enabled(model::LlamaDecoderImpl& model, bool enabled) {
  for (auto& [name, a] : decoder_adapters(model)) a->set_enabled(enabled);
}

}  // namespace mmtune::adapters
