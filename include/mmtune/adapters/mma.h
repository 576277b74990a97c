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

FamilyEntry mma_family();

}  // namespace mmtune::adapters
