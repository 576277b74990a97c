// Building blocks shared by the frozen models: projections and embeddings that allocate their
// weights once, uninitialised, with the caller's TensorOptions (device incl. meta, dtype) — the
// weights come from a checkpoint, so a 7B model is never built in fp32 and converted, and a meta
// model costs no memory — plus RMSNorm and rotary position embeddings (HF rotate-half layout).
#pragma once

#include <torch/torch.h>

#include <mmtune/model/llama_config.h>
#include <mmtune/model/quantize.h>

#include <mutex>

namespace mmtune::model {

/// A submodule that only groups children under one checkpoint prefix (LLaMA's "model", "self_attn",
/// "mlp"; CLIP's "vision_model", "embeddings"), so parameter names are Hugging Face's.
struct ModuleGroup : torch::nn::Module {};

/// y = x W^T (+ b). W: [out, in] (checkpoint key "weight"), b: [out] ("bias").
/// Quantized (`quant` int8 | int4, model/quantize.h): no W; buffers "qweight" and "scales" instead,
/// filled from a pre-quantized checkpoint or by set_quantized(), and the kernels' own layout of
/// them, built on the first forward on a device.
class ProjectionImpl : public torch::nn::Module {
 public:
  ProjectionImpl(int64_t in, int64_t out, bool bias, const torch::TensorOptions& options,
                 const std::string& quant = "none", int64_t group = 0);
  torch::Tensor forward(const torch::Tensor& x);
  bool quantized() const { return quant_.mode != "none"; }
  /// The stored quantized weight (its buffers; undefined tensors when not quantized).
  const QuantizedWeight& quantized_weight() const { return quant_; }
  /// Copies `q` (same mode, group and shapes) into the buffers.
  void set_quantized(const QuantizedWeight& q);
  /// Builds the kernels' layout for inputs of `dtype` on the weights' device now and, for bf16 /
  /// fp16 inputs, frees the stored int4 codes (the layout holds the same bytes in the kernel's
  /// order): an inference-only process then holds each weight once (fp32 inputs keep the codes, which
  /// their many-row products are dequantized from). No backward, no checkpoint write, no other device
  /// or dtype afterwards (a clear error if asked). Returns the bytes freed.
  int64_t pack_for_inference(torch::Dtype dtype);
  torch::Tensor weight, bias;

 private:
  QuantizedWeight quant_;  // mode "none" when not quantized
  PackedWeight packed_;
  int64_t packed_version_ = -1;
  bool inference_only_ = false;  // pack_for_inference ran: inputs of packed_.dtype only, no grad
  std::mutex pack_mutex_;
};
TORCH_MODULE(Projection);

/// The Projection at `path` ("self_attn.q_proj") under `root`, or nullptr.
ProjectionImpl* find_projection(torch::nn::Module& root, const std::string& path);

/// Token embedding table. weight: [V, D].
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& options);
  /// ids [B, T] -> [B, T, D]; `table` overrides the weight (IAA workflows) when defined.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& table = {});
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

/// LLaMA RMSNorm, computed in fp32 and cast back (as transformers does). weight: [D].
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, const torch::TensorOptions& options);
  /// `weight_override` replaces the weight when defined (IAA's per-workflow final norm).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& weight_override = {});
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

/// cos/sin tables for given positions: each [B, T, head_dim], in the activation dtype.
struct RopeTables {
  torch::Tensor cos, sin;
};

/// Rotary embeddings with HF's rotate-half layout; llama3 frequency scaling when configured.
class Rope {
 public:
  Rope(const LlamaConfig& config, const torch::Device& device);
  /// positions [B, T] int64 -> tables in `dtype` (computed in fp32).
  RopeTables tables(const torch::Tensor& positions, torch::Dtype dtype) const;
  const torch::Tensor& inv_freq() const { return inv_freq_; }

 private:
  torch::Tensor inv_freq_;  // [head_dim / 2] fp32
};

/// x * cos + rotate_half(x) * sin for x [B, heads, T, head_dim] and tables [B, T, head_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& rope);

}  // namespace mmtune::model
