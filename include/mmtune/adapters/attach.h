// Attaching the configured adapter family to a frozen model and collecting what trains.
#pragma once

#include <vector>

#include <torch/torch.h>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/config.h>
#include <mmtune/model/clip_vit.h>
#include <mmtune/model/llama.h>

namespace mmtune::adapters {

/// Freezes every parameter of `model`, attaches `adapter.family`'s block adapters to its blocks,
/// and returns the adapter parameters (all requiring grad). family "none" attaches nothing.
/// Throws mmtune::Error if the family has no LLM adapters.
std::vector<torch::Tensor> attach_to_llama(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                           const AdapterRegistry& registry = builtin_adapters());

/// Attaches `adapter.family`'s CLIP block adapters (if the family has any) after freezing `vit`;
/// returns their parameters.
std::vector<torch::Tensor> attach_to_vision(model::ClipVisionTransformerImpl& vit, const config::AdapterConfig& adapter,
                                            const AdapterRegistry& registry = builtin_adapters());

/// Attaches the family's decoder-level adapter (LaVIN's neck + modality embedding, ...) if it has
/// one; `vision_width` 0 for a text-only model. Returns its parameters.
std::vector<torch::Tensor> attach_decoder(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                          int64_t vision_width, int64_t projector_hidden,
                                          const AdapterRegistry& registry = builtin_adapters());

/// Enables or disables every attached adapter (disabled = the frozen model's output exactly).
void set_adapters_enabled(model::LlamaDecoderImpl& model, bool enabled);

}  // namespace mmtune::adapters
