// MoLE: sparse Mixture of LoRA Experts (LLaVA-MoLE).
// Chen, Jie, Ma, "LLaVA-MoLE: Sparse Mixture of LoRA Experts for Mitigating Data Conflicts in
// Instruction Finetuning MLLMs", arXiv:2401.16160. Spec: ../shared/spec/adapters.md §3.
//   p = softmax(x W_r^T + b_r); e = argmax p          one top-1 router per layer on the FFN input x,
//                                                     shared by gate/up/down
//   FFN projections get W z + g * LoRA_e(z), g per gate_mode (st_top1: value 1, gradient through p_e)
//   attention q/k/v/o get plain LoRA; L = L_text + w_bal * L_bal (load balancing, valid tokens only)
// Tokens are dispatched grouped: sorted by expert once per layer, each expert's LoRA runs on its
// contiguous slice, the results go back through the same permutation (reused for down_proj).
#pragma once

#include <string>
#include <vector>

#include <mmtune/adapters/registry.h>

namespace mmtune::adapters {

struct MoleConfig final : config::FamilyConfig {
  int64_t experts = 3;      // K
  int64_t rank = 32;        // r of every expert and of the attention LoRA
  double alpha = 64.0;
  double dropout = 0.05;
  std::vector<std::string> attn_targets{"q", "k", "v", "o"};  // plain LoRA; FFN gate/up/down are the experts
  std::string gate_mode = "st_top1";  // st_top1 | none | switch | dense_soft (spec §3.2)
  // per_sample_cross_layer (released): mean_b sum_k Pbar_bk Fbar_bk, pooled per sample over layers and
  // valid tokens; switch_per_layer: K sum_k f_k P_k per layer over the batch's valid tokens, mean over
  // layers. Both are 1/K at a uniform router and 1 when every token goes to one expert with p = 1.
  std::string balance_loss = "per_sample_cross_layer";
  double balance_weight = 0.01;  // w_bal

  std::string family() const override { return "mole"; }
  std::unique_ptr<config::FamilyConfig> clone() const override { return std::make_unique<MoleConfig>(*this); }
  void visit(config::Visitor& v) override;
  void validate(config::Problems& p, const std::string& path) const override;
};

/// The name MoLE's balancing loss has in ForwardContext::aux_losses. The pushed value is already
/// weighted: balance_weight * L_bal (add it to the LM loss as it is).
inline constexpr const char* kMoleBalanceLoss = "mole.balance";

/// One layer's top-1 routing of the current input, made once on the FFN input and reused by the
/// gate, up and down deltas. N = B * T tokens, K experts.
struct MoleRouting {
  torch::Tensor probs;          // [N, K] fp32 softmax of the router logits
  torch::Tensor expert;         // [N] int64 argmax of probs
  torch::Tensor gate;           // [N] fp32 weight of the chosen expert's delta (per gate_mode; undefined for dense_soft)
  torch::Tensor order;          // [N] int64 stable argsort of expert: the tokens grouped by expert, in input order
  std::vector<int64_t> counts;  // [K] tokens per expert (on the host: the slice sizes)
};

/// Routes router logits [N, K] top-1. gate_mode (spec §3.2): st_top1 gate = 1 + p_e - sg(p_e)
/// (value 1, gradient through p_e); none: 1 (the router learns from the balancing loss only);
/// switch: p_e; dense_soft: no gate (every expert, weighted by p). Ties go to the lower expert.
MoleRouting route_top1(const torch::Tensor& logits, const std::string& gate_mode);

/// K LoRA experts of one frozen projection, stacked: lora_A [K, r, in] (each Kaiming-uniform as
/// nn.Linear), lora_B [K, out, r] (zero: a fresh mixture leaves the projection unchanged).
class MoleExpertsImpl : public torch::nn::Module {
 public:
  MoleExpertsImpl(int64_t experts, int64_t rank, int64_t in, int64_t out, const torch::Device& device);
  /// Grouped top-1: xs [N, in] fp32 holds the tokens grouped by expert (expert k's rows at
  /// sum(counts[:k]) .. + counts[k]); coef [N] scales each row's delta. Returns [N, out] fp32 in
  /// the same (grouped) order: row n = coef_n * B_k A_k xs_n. One GEMM pair per non-empty expert.
  torch::Tensor grouped(const torch::Tensor& xs, const std::vector<int64_t>& counts, const torch::Tensor& coef) const;
  /// Soft mixture: x [N, in] fp32, weights [N, K] -> [N, out] fp32 = sum_k w_nk B_k A_k x_n, as one
  /// GEMM pair over the concatenated ranks.
  torch::Tensor mixed(const torch::Tensor& x, const torch::Tensor& weights) const;
  int64_t experts() const { return a_.size(0); }
  const torch::Tensor& lora_a() const { return a_; }
  const torch::Tensor& lora_b() const { return b_; }

 private:
  torch::Tensor a_, b_;
};
TORCH_MODULE(MoleExperts);

/// The MoLE adapter of one LLaMA block, parameters under adapters.mole:
///   {q,k,v,o}.lora_A [r, D_in] / lora_B [D_out, r]    plain LoRA on the attention targets
///   router.weight [K, D], router.bias [K]               nn.Linear's default init
///   moe_{gate,up,down}.lora_A [K, r, in] / lora_B [K, out, r]
/// At Site::kPreMlp (the normed FFN input) it routes and keeps the routing in ForwardContext::state
/// ("mole.llm.<layer>.*"); the gate/up/down deltas read it. Per forward (prefill or training, not
/// decode steps) it accumulates the balancing statistics over valid tokens (ctx.valid_mask) from
/// layer 0 on and, in the last layer, pushes kMoleBalanceLoss to ctx.aux_losses (K > 1 and
/// balance_weight > 0) and leaves the unweighted value in ctx.state["mole.balance"].
class MoleBlockImpl : public BlockAdapterImpl {
 public:
  MoleBlockImpl(const MoleConfig& config, const BlockShape& shape, int64_t layer, int64_t num_layers,
                const torch::Device& device);
  bool uses(Site s) const override { return s == Site::kPreMlp; }
  bool uses(Proj p) const override;
  torch::Tensor at(Site site, torch::Tensor h, ForwardContext& ctx) override;
  torch::Tensor delta(Proj p, const torch::Tensor& x, ForwardContext& ctx) override;

  /// The attention LoRA pair {A, B} of q/k/v/o (undefined when not targeted).
  std::pair<torch::Tensor, torch::Tensor> attention_pair(Proj p) const;
  /// The experts of gate, up or down.
  MoleExpertsImpl& experts(Proj p) const;
  const torch::Tensor& router_weight() const { return router_w_; }
  const torch::Tensor& router_bias() const { return router_b_; }
  double scale() const { return scale_; }
  int64_t layer() const { return layer_; }

 private:
  void accumulate_balance(const MoleRouting& r, const torch::Tensor& valid, int64_t B, ForwardContext& ctx) const;
  void emit_balance(ForwardContext& ctx) const;

  MoleConfig config_;
  int64_t layer_, num_layers_;
  double scale_;
  std::string key_;  // "mole.llm.<layer>"
  torch::Tensor attn_a_[kNumProjs], attn_b_[kNumProjs];
  torch::Tensor router_w_, router_b_;
  MoleExperts gate_{nullptr}, up_{nullptr}, down_{nullptr};
};
TORCH_MODULE(MoleBlock);

/// LLaVA-1.5's vision path for this family: the projector (Linear W -> D, GELU, Linear D -> D,
/// nn.Linear's default init) under projector.0 / projector.2, and, with start_end_tokens, the
/// learnable visual_start_token / visual_end_token [1, 1, D] ~ N(0, D^-0.5) around the span:
/// features [B, n, W] -> visual tokens [B, n + 2, D].
class MoleDecoderAdapterImpl : public DecoderAdapterImpl {
 public:
  MoleDecoderAdapterImpl(int64_t llm_width, int64_t vision_width, bool start_end_tokens, const torch::Device& device);
  /// features [B, n, W] -> [B, n (+ 2), D] fp32.
  torch::Tensor project_visual(const torch::Tensor& features, ForwardContext& ctx) override;
  int64_t visual_token_count(int64_t features) const override { return features + (start_end_ ? 2 : 0); }

 private:
  bool start_end_;
  torch::Tensor w1_, b1_, w2_, b2_, start_, end_;
};
TORCH_MODULE(MoleDecoderAdapter);

/// Valid tokens routed to each expert of every MoLE layer in the last full forward (training or
/// prefill) run with `ctx`: [L, K] fp32 counts, rows in layer order, no grad; an empty tensor when no
/// MoLE layer ran. Sum over micro-batches / ranks, then divide each row by its sum for the usage
/// fractions of the metrics.
torch::Tensor mole_expert_tokens(const ForwardContext& ctx);

FamilyEntry mole_family();

}  // namespace mmtune::adapters
