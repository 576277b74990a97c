// LoRA: Low-Rank Adaptation.
// Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, arXiv:2106.09685.
//   y = W x + (alpha / r) * B A dropout(x)     A: [r, in] Kaiming-uniform, B: [out, r] zero
// on the chosen frozen projections (q, k, v, o, gate, up, down) of the chosen layers.
// This file holds the family's options (adapter.lora.*).
#pragma once

#include <mmtune/adapters/registry.h>

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

 private:
  double scale_, dropout_;
  bool targeted_[kNumProjs] = {};
  torch::Tensor a_[kNumProjs], b_[kNumProjs];
};
TORCH_MODULE(LoraBlock);

/// Projection short name ("q", "gate", ...) <-> Proj.
Proj projection_from_name(const std::string& name);
const char* projection_name(Proj p);

FamilyEntry lora_family();

}  // namespace mmtune::adapters
