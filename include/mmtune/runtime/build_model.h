// The composition root: config -> frozen backbones (loaded, or shapes only on the meta device) +
// the configured adapter family attached + the trainable set. Train, eval, chat and the dry run
// all build their model here.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include <mmtune/config/config.h>
#include <mmtune/data/batch.h>
#include <mmtune/model/multimodal.h>

namespace mmtune::runtime {

struct BuiltModel {
  model::MultimodalLM model{nullptr};
  /// Parameters with requires_grad, named as in model->named_parameters() ("llm.model.layers.0...").
  std::vector<std::pair<std::string, torch::Tensor>> trainable;
  int64_t frozen_parameters = 0;
};

enum class Weights {
  kLoad,  // read model.path / vision.path (safetensors), on cfg.device in cfg.dtype
  kMeta,  // shapes only (config.json or model.arch / vision.arch), on the meta device: no memory
  kRandom,  // the kMeta shapes with random values on cfg.device in cfg.dtype (benchmarks: no download)
};

/// Throws mmtune::Error / CheckpointError with a hint when a shape or a file is missing.
/// kRandom fills the frozen weights from torch's default generator: N(0, 0.02) for matrices, ones
/// for norm weights and other 1-D scales, zeros for biases.
BuiltModel build_model(const config::RunConfig& cfg, Weights weights);

/// Refuses, as a ConfigError naming the key, a training setting the configured family cannot run
/// (its FamilyEntry's capabilities): train.activation_checkpointing for a family whose blocks
/// cannot be recomputed. Every path that trains calls it: mmtune train, its --dry-run, bench train.
void check_training_support(const config::RunConfig& cfg);

/// Where the built model's visual tokens go in the text: the family's prompt layout
/// (adapters/registry.h: LaVIN's "Image: " / "Image: N/A" prefixes, IAA's image token, else
/// "<image>") and built.model->visual_tokens() slots per image (0 for a text-only model).
data::SequenceLayout sequence_layout(const config::RunConfig& cfg, const BuiltModel& built);

/// model.quantize / quant_group / quant_fallback as the model layer takes them.
model::Quantization quantization(const config::ModelConfig& m);
/// vision.quantize with model.quant_group / quant_fallback, as the ViT takes them.
model::Quantization vision_quantization(const config::RunConfig& cfg);

/// The frozen LLM shape from model.path/config.json, else model.arch.
model::LlamaConfig llm_shape(const config::ModelConfig& m);
/// The ViT shape from vision.path/config.json, else vision.arch; nullopt for a text-only model.
std::optional<model::ClipVisionConfig> vision_shape(const config::VisionConfig& v);

}  // namespace mmtune::runtime
