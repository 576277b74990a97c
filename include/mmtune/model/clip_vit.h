// The frozen CLIP vision tower (Hugging Face CLIPVisionModel layout and names, pre-LN ViT):
//   x = [class; patches(pixels)] + pos;  x = pre_layrnorm(x);
//   each block: x = x + out_proj(attn(layer_norm1(x)));  x = x + fc2(act(fc1(layer_norm2(x))))
// act = quick_gelu (OpenAI CLIP) or gelu. Returns the hidden states a caller asks for:
// LaVIN takes the CLS token after every 4th block, LLaVA the patch tokens of block -2.
// Adapters plug in through the same BlockAdapterImpl interface as the LLM (CLIP: out_proj = kO,
// fc1 = kUp, fc2 = kDown), with ForwardContext::vision = true.
// Dimension letters: B batch, N = 1 + P tokens (P patches), W width, Hh heads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/adapters/adapter.h>
#include <mmtune/model/adapter_slots.h>
#include <mmtune/model/layers.h>

namespace mmtune::model {

struct ClipVisionConfig {
  int64_t image_size = 224;
  int64_t patch_size = 14;
  int64_t hidden_size = 1024;        // W
  int64_t intermediate_size = 4096;
  int64_t num_layers = 24;
  int64_t num_heads = 16;
  int64_t num_channels = 3;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";  // quick_gelu | gelu
  /// What the blocks' Linear layers (q/k/v/out_proj, fc1, fc2) are quantized to: set by the caller
  /// (vision.quantize), never read from config.json; the embeddings and norms stay in the dtype.
  Quantization quantization;
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }

  /// Reads config.json of a CLIPVisionModel, or the "vision_config" of a full CLIPModel.
  /// Throws mmtune::CheckpointError.
  static ClipVisionConfig from_hf(const std::string& dir_or_file);
};

/// LayerNorm with weight and bias, allocated uninitialised (weights come from a checkpoint).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm);

class ClipBlockImpl : public torch::nn::Module {
 public:
  /// `layer` names the block's weights in errors (vision_model.encoder.layers.<layer>.mlp.fc1).
  ClipBlockImpl(const ClipVisionConfig& config, const torch::TensorOptions& options, int64_t layer);
  /// x [B, N, W] -> [B, N, W]
  torch::Tensor forward(const torch::Tensor& x, adapters::ForwardContext& ctx);
  void attach(const std::string& family, std::shared_ptr<adapters::BlockAdapterImpl> adapter);
  const std::vector<std::shared_ptr<adapters::BlockAdapterImpl>>& block_adapters() const { return slots_.adapters(); }

 private:
  int64_t heads_, head_dim_;
  bool quick_gelu_;
  Projection q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, out_proj_{nullptr}, fc1_{nullptr}, fc2_{nullptr};
  LayerNorm layer_norm1_{nullptr}, layer_norm2_{nullptr};
  AdapterSlots slots_;
};
TORCH_MODULE(ClipBlock);

class ClipVisionTransformerImpl : public torch::nn::Module {
 public:
  ClipVisionTransformerImpl(const ClipVisionConfig& config, const torch::TensorOptions& options);
  /// pixels [B, 3, S, S] -> the hidden states after the requested blocks, in order: index 0 is the
  /// embeddings after pre_layrnorm, k the output of block k, negative counts from the end (-1 = last
  /// block, -2 = penultimate), as transformers' output_hidden_states. Each [B, N, W].
  /// Stops after the deepest block asked for.
  std::vector<torch::Tensor> forward(const torch::Tensor& pixels, const std::vector<int64_t>& layers,
                                     adapters::ForwardContext& ctx);
  /// post_layernorm applied to a hidden state (transformers' pooler input).
  torch::Tensor post_layernorm(const torch::Tensor& x) { return post_layernorm_->forward(x); }
  void attach_block_adapter(int64_t layer, const std::string& family,
                            std::shared_ptr<adapters::BlockAdapterImpl> adapter);
  adapters::BlockShape block_shape() const;
  const ClipVisionConfig& config() const { return config_; }
  ClipBlockImpl& block(int64_t i) { return *blocks_[i]; }

 private:
  ClipVisionConfig config_;
  torch::Tensor class_embedding_;              // [W]
  torch::Tensor patch_weight_;                 // [W, 3, p, p] (conv, no bias)
  torch::Tensor position_embedding_;           // [N, W]
  LayerNorm pre_layrnorm_{nullptr}, post_layernorm_{nullptr};
  std::vector<ClipBlock> blocks_;
};
TORCH_MODULE(ClipVisionTransformer);

/// Builds the tower from a Hugging Face directory in `options` and loads its weights (text-tower
/// and projection tensors of a full CLIPModel checkpoint are ignored), quantizing the blocks'
/// Linear layers to `quantize` one weight at a time as they load. Throws CheckpointError, or
/// UsageError for a quantization the shapes or the dtype cannot take.
ClipVisionTransformer load_clip_vision(const std::string& dir, const torch::TensorOptions& options,
                                       const Quantization& quantize = {});

}  // namespace mmtune::model
