// LoRA: Low-Rank Adaptation.
// Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, arXiv:2106.09685.
//   y = W x + (alpha / r) * B A dropout(x)     A: [r, in] Kaiming-uniform, B: [out, r] zero
// on the chosen frozen projections (q, k, v, o, gate, up, down) of the chosen layers.
// For inference the delta folds into the frozen weight: W' = W + (alpha / r) B A (merge_lora).
// This file holds the family's options (adapter.lora.*), the block module, the helpers MoLE's
// attention LoRA and experts share, and the merge. The PEFT file layout is in adapters/peft.h.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <mmtune/adapters/registry.h>
#include <mmtune/model/llama.h>

namespace mmtune::adapters {

/// The projections a LoRA may target, by their short names.
const std::vector<std::string>& lora_projection_names();

struct LoraConfig final : config::FamilyConfig {
  int64_t rank = 8;
  double alpha = 16.0;
  double dropout = 0.05;
  std::vector<std::string> targets{"q", "k", "v", "o"};  // subset of q k v o gate up down
  std::vector<int64_t> layers;                           // empty = every layer

  std::string family() const override { return "lora"; }
  std::unique_ptr<config::FamilyConfig> clone() const override { return std::make_unique<LoraConfig>(*this); }
  void visit(config::Visitor& v) override;
  void validate(config::Problems& p, const std::string& path) const override;
};

/// Shared by LoRA and MoLE's attention LoRA: rank > 0, alpha > 0, dropout in [0, 1), known targets.
void validate_lora_options(config::Problems& p, const std::string& path, int64_t rank, double alpha,
                           double dropout, const std::vector<std::string>& targets,
                           const std::string& targets_key);

/// Registers the child module `name` of `owner` holding lora_A [r, in] (Kaiming-uniform with
/// a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)), as nn.Linear and PEFT) and lora_B [out, r] (zero),
/// fp32 on `device`. Returns {A, B}.
std::pair<torch::Tensor, torch::Tensor> register_lora_pair(torch::nn::Module& owner, const std::string& name,
                                                           int64_t rank, int64_t in, int64_t out,
                                                           const torch::Device& device);

/// scale * dropout(x) A^T B^T for x [..., in] -> [..., out]; computed in fp32, cast to x's dtype.
/// Dropout only when `training` and dropout > 0.
torch::Tensor lora_delta(const torch::Tensor& x, const torch::Tensor& a, const torch::Tensor& b, double scale,
                         double dropout, bool training);

/// One LoRA pair per targeted projection of one block, under <proj>.lora_A / <proj>.lora_B
/// (A: [r, in], B: [out, r]). delta(x) = (alpha / r) * dropout(x) A^T B^T, in fp32, cast to x's dtype.
class LoraBlockImpl : public BlockAdapterImpl {
 public:
  LoraBlockImpl(int64_t rank, double alpha, double dropout, const std::vector<std::string>& targets,
                const BlockShape& shape, const torch::Device& device);
  bool uses(Proj p) const override { return targeted_[static_cast<int>(p)]; }
  torch::Tensor delta(Proj p, const torch::Tensor& x, ForwardContext& ctx) override;
  /// A [r, in] and B [out, r] of projection `p` (undefined if not targeted).
  std::pair<torch::Tensor, torch::Tensor> pair(Proj p) const;
  /// alpha / r.
  double scale() const { return scale_; }

 private:
  double scale_, dropout_;
  bool targeted_[kNumProjs] = {};
  torch::Tensor a_[kNumProjs], b_[kNumProjs];
};
TORCH_MODULE(LoraBlock);

/// Projection short name ("q", "gate", ...) <-> Proj.
Proj projection_from_name(const std::string& name);
const char* projection_name(Proj p);
/// The projection's module path inside a LLaMA block, as transformers names it ("self_attn.q_proj",
/// "mlp.gate_proj").
std::string llama_projection_path(Proj p);

/// Folds every enabled LoRA block attached to `model` into the frozen projection weights in place,
/// W <- W + (alpha / r) B A (computed in fp32, rounded once to W's dtype), then disables those
/// blocks, so the model computes the merged function without them (re-enabling them would add the
/// delta twice). Returns the number of projections merged. Throws mmtune::Error when the model
/// carries an adapter of another family (MoLE's routed experts cannot be folded into one weight).
int64_t merge_lora(model::LlamaDecoderImpl& model);

FamilyEntry lora_family();

}  // namespace mmtune::adapters
