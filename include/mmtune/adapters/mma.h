// MMA: Mixture-of-Modality Adaptation (LaVIN).
// Luo et al., "Cheap and Quick: Efficient Vision-Language Instruction Tuning for Large Language
// Models", NeurIPS 2023, arXiv:2305.15023. Spec: ../shared/spec/adapters.md §1.
//   w   = softmax(router(x[:, 0]) / t)                  per-sample 2-way routing from the modality token
//   hid = dropout(x A^T + a)                            shared down-projection C -> h (no activation)
//   out = x + s * (w0 * UpB(hid) + w1 * UpD(hid))       two block-diagonal, zero-initialised up-projections
// Placed on the normed input before attention in every LLM block (and optionally before the FFN),
// and in every CLIP block. This file holds the family's options (adapter.mma.*).
#pragma once

#include <mmtune/adapters/registry.h>

namespace mmtune::adapters {

struct MmaConfig final : config::FamilyConfig {
  int64_t dim = 8;                     // hidden width h of the adapter
  double scale = 1.0;                  // s
  double temperature = 10.0;           // router temperature t (LaVIN: 10 for 7B, 5 for 13B)
  double dropout = 0.1;                // on the hidden, training only
  std::string llm_placement = "attn";  // attn (before attention) | block (also before the FFN)
  std::string vision_placement = "router";  // router | router_block (also before the MLP) | none
  std::string clip_router_mode = "per_sample_cls";  // per_sample_cls | official_lnd_quirk (§1.3)
  int64_t rope_decode_offset = 1;      // 1 = positions continue the prompt; 0 = LaVIN's off-by-one (§1.11)
  bool modality_token = true;          // the 2-row modality embedding at position 0
  std::string image_prefix = "Image: ";
  std::string text_prefix = "Image: N/A";

  std::string family() const override { return "mma"; }
  std::unique_ptr<config::FamilyConfig> clone() const override { return std::make_unique<MmaConfig>(*this); }
  void visit(config::Visitor& v) override;
  void validate(config::Problems& p, const std::string& path) const override;
};

/// LaVIN's routed MM-adapter (RepAdapter_Router) for width C, under LaVIN's parameter names:
/// conv_A.weight [h, C, 1] + bias [h] (down), conv_B / conv_D.weight [C, h/2, 1] + bias [C] (the two
/// grouped up-projections, groups = 2), expert_weights.weight [2, C] + bias [2] (router).
/// Sits on the normed input before attention (kPreAttn) and, in block mode, before the MLP (kPreMlp).
class MmaAdapterImpl : public BlockAdapterImpl {
 public:
  /// `vision`: a CLIP block (routing per clip_router_mode) rather than an LLM block; `key`: its
  /// slot in ForwardContext::state for the cached routing weights.
  MmaAdapterImpl(int64_t width, const MmaConfig& config, bool vision, std::string key, const torch::Device& device);
  bool uses(Site s) const override { return s == Site::kPreAttn || (s == Site::kPreMlp && before_mlp_); }
  torch::Tensor at(Site site, torch::Tensor x, ForwardContext& ctx) override;

  /// Routing weights for x [B, T, C]: [B, 1, 2] per sample, or [1, T, 2] under official_lnd_quirk.
  torch::Tensor route(const torch::Tensor& x) const;

 private:
  torch::Tensor up(const torch::Tensor& hid, const torch::Tensor& w, const torch::Tensor& b) const;

  MmaConfig cfg_;
  bool vision_, before_mlp_;
  std::string key_;
  torch::Tensor a_w_, a_b_, b_w_, b_b_, d_w_, d_b_, r_w_, r_b_;
};

/// LaVIN's decoder-level trainables: the visual neck `adapter_proj` (conv_A: Linear(Cv -> hidden),
/// SiLU, conv_B: Linear(hidden -> D), Xavier weights, zero biases) and the 2-row modality embedding
/// `adapter_modality_embedding` [2, D] ~ N(0, 1). The mask edit (nobody attends to the modality
/// token at position 0) and the sequence assembly arrive with the multimodal model.
class MmaDecoderAdapterImpl : public DecoderAdapterImpl {
 public:
  MmaDecoderAdapterImpl(int64_t llm_width, int64_t vision_width, int64_t hidden, const torch::Device& device);
  /// CLS features [B, n, Cv] -> visual tokens [B, n, D].
  torch::Tensor neck(const torch::Tensor& feats) const;
  /// modality [B] (0 text, 1 image) -> [B, 1, D].
  torch::Tensor modality_embedding(const torch::Tensor& modality) const;

 private:
  torch::Tensor neck_a_w_, neck_a_b_, neck_b_w_, neck_b_b_, modality_;
};

FamilyEntry mma_family();

}  // namespace mmtune::adapters
