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

/// One routed MM-adapter (LaVIN's RepAdapter_Router) for width C, under LaVIN's parameter names:
/// conv_A.weight [h, C, 1] + bias [h] (down), conv_B / conv_D.weight [C, h/2, 1] + bias [C] (the two
/// grouped up-projections, groups = 2), expert_weights.weight [2, C] + bias [2] (router).
class RepAdapterRouterImpl : public torch::nn::Module {
 public:
  RepAdapterRouterImpl(int64_t width, const MmaConfig& config, const torch::Device& device);
  /// Routing weights for x [B, T, C] (fp32): [B, 1, 2] per sample from token 0, or, with
  /// `per_token_of_first`, [1, T, 2] from sample 0's tokens (LaVIN's CLIP quirk, spec §1.3).
  torch::Tensor route(const torch::Tensor& x, bool per_token_of_first) const;
  /// x + s * (w0 * UpB(hid) + w1 * UpD(hid)) with hid = dropout(x A^T + a); x [B, T, C].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& weights);

 private:
  double scale_, temperature_, dropout_;
  torch::Tensor a_w_, a_b_, b_w_, b_b_, d_w_, d_b_, r_w_, r_b_;
};
TORCH_MODULE(RepAdapterRouter);

/// The MMA adapter of one block: `adapter_attn` on the normed input before attention (kPreAttn)
/// and, in LLM `block` / CLIP `router_block` placement, a second one, `adapter_mlp`, before the
/// MLP (kPreMlp) — LaVIN's names, so its checkpoints map one to one.
class MmaAdapterImpl : public BlockAdapterImpl {
 public:
  /// `vision`: a CLIP block (routing per clip_router_mode) rather than an LLM block; `key`: its
  /// slot in ForwardContext::state for the cached routing weights.
  MmaAdapterImpl(int64_t width, const MmaConfig& config, bool vision, std::string key, const torch::Device& device);
  bool uses(Site s) const override { return s == Site::kPreAttn || (s == Site::kPreMlp && mlp_); }
  torch::Tensor at(Site site, torch::Tensor x, ForwardContext& ctx) override;
  /// Per router: its fp32 input and both experts' outputs (the trainable routing weights multiply
  /// them, so autograd keeps them): 3 x width x 4 bytes.
  int64_t saved_bytes_per_token(const BlockShape& shape, int64_t act_bytes) const override;

 private:
  bool vision_, lnd_quirk_;
  std::string key_;
  RepAdapterRouter attn_{nullptr}, mlp_{nullptr};
};

/// LaVIN's decoder-level trainables and hooks: the visual neck `adapter_proj` (conv_A: Linear(Cv ->
/// hidden), SiLU, conv_B: Linear(hidden -> D), Xavier weights, zero biases) turning the CLS
/// features into visual tokens; the 2-row modality embedding `adapter_modality_embedding` [2, D]
/// ~ N(0, 1) put at position 0; the mask edit (nobody attends to position 0, it attends to itself);
/// and, with rope_decode_offset 0, LaVIN's decode positions one behind (spec §1.11).
class MmaDecoderAdapterImpl : public DecoderAdapterImpl {
 public:
  MmaDecoderAdapterImpl(int64_t llm_width, int64_t vision_width, int64_t hidden, const MmaConfig& config,
                        const torch::Device& device);
  /// CLS features [B, n, Cv] -> visual tokens [B, n, D] (fp32).
  torch::Tensor neck(const torch::Tensor& feats) const;
  /// modality [B] (0 text, 1 image) -> [B, 1, D] (fp32).
  torch::Tensor modality_embedding(const torch::Tensor& modality) const;

  torch::Tensor project_visual(const torch::Tensor& features, ForwardContext& ctx) override { return neck(features); }
  torch::Tensor prefix_embeddings(ForwardContext& ctx) override;
  void edit_attention(torch::Tensor& mask, torch::Tensor& positions, ForwardContext& ctx) override;

 private:
  bool modality_token_;
  int64_t rope_decode_offset_;
  torch::Tensor neck_a_w_, neck_a_b_, neck_b_w_, neck_b_b_, modality_;
};

FamilyEntry mma_family();

}  // namespace mmtune::adapters
