// MoLE: sparse Mixture of LoRA Experts (LLaVA-MoLE).
// Chen, Jie, Ma, "LLaVA-MoLE: Sparse Mixture of LoRA Experts for Mitigating Data Conflicts in
// Instruction Finetuning MLLMs", arXiv:2401.16160. Spec: ../shared/spec/adapters.md §3.
//   p = softmax(x W_r^T + b_r); e = argmax p          one top-1 router per layer, shared by gate/up/down
//   FFN projections get W x + g * LoRA_e(x), g per gate_mode (st_top1: value 1, gradient through p_e)
//   attention q/k/v/o get plain LoRA; L = L_text + w_bal * L_bal (load balancing)
// This file holds the family's options (adapter.mole.*).
#pragma once

#include <mmtune/adapters/registry.h>

namespace mmtune::adapters {

struct MoleConfig final : config::FamilyConfig {
  int64_t experts = 3;      // K
  int64_t rank = 32;        // r of every expert and of the attention LoRA
  double alpha = 64.0;
  double dropout = 0.05;
  std::vector<std::string> attn_targets{"q", "k", "v", "o"};  // plain LoRA; FFN gate/up/down are the experts
  std::string gate_mode = "st_top1";  // st_top1 | none | switch | dense_soft (spec §3.2)
  std::string balance_loss = "per_sample_cross_layer";  // per_sample_cross_layer (released) | switch_per_layer
  double balance_weight = 0.01;  // w_bal

  std::string family() const override { return "mole"; }
  std::unique_ptr<config::FamilyConfig> clone() const override { return std::make_unique<MoleConfig>(*this); }
  void visit(config::Visitor& v) override;
  void validate(config::Problems& p, const std::string& path) const override;
};

FamilyEntry mole_family();

}  // namespace mmtune::adapters
