// Attaching the configured adapter family to a frozen model and collecting what trains.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/config.h>
#include <mmtune/model/clip_vit.h>
#include <mmtune/model/llama.h>

namespace mmtune::adapters {

/// Freezes every parameter of `model`, attaches `adapter.family`'s block adapters to its blocks,
/// and returns the adapter parameters (all requiring grad). family "none" attaches nothing, nor
/// does a family with decoder-level adapters only (IAA). Throws mmtune::Error if the family has
/// no LLM adapters at all.
std::vector<torch::Tensor> attach_to_llama(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                           const AdapterRegistry& registry = builtin_adapters());

/// Attaches `adapter.family`'s CLIP block adapters (if the family has any) after freezing `vit`;
/// returns their parameters.
std::vector<torch::Tensor> attach_to_vision(model::ClipVisionTransformerImpl& vit, const config::AdapterConfig& adapter,
                                            const AdapterRegistry& registry = builtin_adapters());

/// Attaches the family's decoder-level adapter (LaVIN's neck + modality embedding, IAA's workflow,
/// ...) if it has one, under the family's decoder_name (default: the family name); `visual.width`
/// 0 for a text-only model. Sets requires_grad on the adapter's adapter_parameters() (only those:
/// IAA's stage 1 leaves its copied layers frozen) and returns them. Throws mmtune::Error when an
/// adapter of that name is already attached.
std::vector<torch::Tensor> attach_decoder(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                          const VisualPath& visual, const AdapterRegistry& registry = builtin_adapters());
/// The same with no projector name (vision.projector): for families that ignore it.
std::vector<torch::Tensor> attach_decoder(model::LlamaDecoderImpl& model, const config::AdapterConfig& adapter,
                                          int64_t vision_width, int64_t projector_hidden,
                                          const AdapterRegistry& registry = builtin_adapters());

/// The decoder adapters attached to `model` with the names they were attached under, in attach
/// order (the first enabled one is the active one: LlamaDecoderImpl::active_decoder_adapter).
std::vector<std::pair<std::string, std::shared_ptr<DecoderAdapterImpl>>> decoder_adapters(model::LlamaDecoderImpl& model);

/// Enables or disables every block adapter of the LLM. The decoder adapter (sequence assembly: LaVIN's
/// modality token, IAA's inserted layers) stays as it is: see set_decoder_adapters_enabled.
void set_adapters_enabled(model::LlamaDecoderImpl& model, bool enabled);

/// Enables or disables the decoder adapters; with these and the block adapters off, the LLM is the
/// frozen model exactly.
void set_decoder_adapters_enabled(model::LlamaDecoderImpl& model, bool enabled);

}  // namespace mmtune::adapters
