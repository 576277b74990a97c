#include <mmtune/adapters/mma.h>
#include <mmtune/core/strings.h>

namespace mmtune::adapters {
namespace {
const std::vector<std::string> kLlmPlacement{"attn", "block"};
const std::vector<std::string> kVisionPlacement{"router", "router_block", "none"};
const std::vector<std::string> kRouterModes{"per_sample_cls", "official_lnd_quirk"};
}  // namespace

void MmaConfig::visit(config::Visitor& v) {
  v("dim", dim, "adapter hidden width h");
  v("scale", scale, "adapter output scale s");
  v("temperature", temperature, "router softmax temperature t");
  v("dropout", dropout, "dropout on the adapter hidden (training only)");
  v.choice("llm_placement", llm_placement, kLlmPlacement, "LLM blocks: before attention, or also before the FFN");
  v.choice("vision_placement", vision_placement, kVisionPlacement, "CLIP blocks: before attention, also before the MLP, or none");
  v.choice("clip_router_mode", clip_router_mode, kRouterModes, "CLIP routing: per sample from CLS, or LaVIN's batch quirk");
  v("rope_decode_offset", rope_decode_offset, "1 = clean decode positions; 0 = LaVIN's off-by-one");
  v("modality_token", modality_token, "prepend the modality embedding at position 0");
  v("image_prefix", image_prefix, "text before the visual tokens of an image sample");
  v("text_prefix", text_prefix, "text in their place for a text-only sample");
}

void MmaConfig::validate(config::Problems& p, const std::string& path) const {
  if (dim <= 0 || dim % 2 != 0) p.add(path + ".dim", cat("must be a positive even number (two groups), got ", dim));
  if (temperature <= 0) p.add(path + ".temperature", "must be > 0");
  if (dropout < 0 || dropout >= 1) p.add(path + ".dropout", "must be in [0, 1)");
  if (rope_decode_offset != 0 && rope_decode_offset != 1) p.add(path + ".rope_decode_offset", "must be 0 or 1");
}

FamilyEntry mma_family() {
  return {"mma", "LaVIN's routed mixture-of-modality adapters (LLM + ViT)",
          [] { return std::make_unique<MmaConfig>(); }, {}};
}

}  // namespace mmtune::adapters
