// mmtune's IAA model against scripts/reference/iaa_reference.py, which runs transformers' own
// LlamaForCausalLM and CLIPVisionModel with the workflow's inserted layers (transformers'
// LlamaDecoderLayer holding the adapter file's weights) after frozen layers S, and the workflow's
// embedding, final norm, LM head and LLaVA projector (spec §2.3, the final IAA without gates).
// Both sides get the same trained-looking workflow (C++ moves every workflow tensor off its copy,
// runtime::save_adapter writes them, the reference reads adapter_model.safetensors) and the same right-padded
// LLaVA batch (two image rows with 16 patch slots, one shorter text-only row).
//
// Tolerance (tests/numerics.h): the reference writes its outputs in float32 and float64; mmtune's
// float64 model (the frozen backbones and the workflow cast) matches the float64 reference to 1e-9,
// mmtune in float32 the float32 reference within 4x the reference's own fp32-vs-fp64 difference.
#include <gtest/gtest.h>

#include <mmtune/adapters/registry.h>
#include <mmtune/adapters/workflows.h>
#include <mmtune/config/load.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/lm_loss.h>

#include "fixtures.h"
#include "numerics.h"
#include "test_utils.h"

namespace mmtune::train {
namespace test_iaa_parity {

constexpr int64_t kPatches = 16;  // tiny ViT: 32 px / patch 8 -> 4 x 4 patch tokens

std::string tiny(const std::string& name) { return std::string(testing::kTinyDir) + "/" + name; }

config::RunConfig tiny_config(const std::vector<std::string>& extra) {
  std::vector<std::string> o{"model.path=" + tiny("llama-gqa"), "vision.path=" + tiny("clip-vit")};
  o.insert(o.end(), extra.begin(), extra.end());
  return config::load_config(std::string(testing::kSourceDir) + "/configs/iaa/tiny.yaml", o,
                             adapters::builtin_adapters());
}

struct Outputs {
  torch::Tensor logits, visual_tokens;
};

Outputs run_model(runtime::BuiltModel& m, const data::Batch& b) {
  torch::NoGradGuard ng;
  m.model->eval();
  adapters::ForwardContext ctx, vctx;
  Outputs o;
  o.logits = m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
  const torch::Tensor images = b.images.index_select(0, torch::tensor({0, 2}));
  o.visual_tokens = m.model->llm().active_decoder_adapter()->project_visual(m.model->visual_features(images, vctx), vctx);
  return o;
}

void run_case(const std::string& label, const std::vector<std::string>& overrides, const std::string& layers,
              uint64_t seed) {
  const auto cfg = tiny_config(overrides);
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  {
    // every workflow tensor moves off its copy of the base: inserted layers, embedding, norm, head
    torch::manual_seed(seed);
    torch::NoGradGuard ng;
    for (auto& [name, t] : m.trainable) t.add_(torch::randn_like(t) * 0.05);
  }
  // rows 0 and 2: BOS, 2 tokens, 16 image slots, text; row 1 text-only, 4 positions shorter
  const data::Batch b = testing::mixed_image_batch(kPatches);
  testing::TempDir dir;
  runtime::save_adapter(dir.path() + "/adapter", cfg, m);
  const std::string batch = dir.path() + "/batch.safetensors", out = dir.path() + "/reference.safetensors";
  io::save_safetensors(batch, {{"tokens", b.tokens},
                               {"attention_mask", b.attention_mask.to(torch::kUInt8)},
                               {"image_slots", b.image_slots.to(torch::kUInt8)},
                               {"images", b.images},
                               {"has_image", b.has_image}});
  const auto r = testing::run_process(
      {testing::kPython, std::string(testing::kSourceDir) + "/scripts/reference/iaa_reference.py", "--llama",
       tiny("llama-gqa"), "--clip", tiny("clip-vit"), "--adapter", dir.path() + "/adapter/" + runtime::kAdapterWeightsFile,
       "--batch", batch, "--out", out, "--workflow", cfg.adapter.selected<adapters::IaaConfig>().workflow,
       "--insert-layers", layers, "--vision-layer", std::to_string(cfg.vision.layer), "--projector",
       cfg.vision.projector},
      {}, std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto ref = io::SafetensorsFile::open(out);

  const Outputs o32 = run_model(m, b);
  runtime::BuiltModel m64 = testing::fp64_twin(cfg, m);  // the frozen backbones and the workflow in float64
  data::Batch b64 = b;
  b64.images = b.images.to(torch::kFloat64);
  const Outputs o64 = run_model(m64, b64);
  ASSERT_EQ(o32.logits.sizes(), ref->tensor("logits").sizes()) << label;
  testing::expect_oracle_parity(label + ": logits", o32.logits, o64.logits, ref->tensor("logits"),
                                ref->tensor("logits.fp64"), b.attention_mask);
  testing::expect_oracle_parity(label + ": visual tokens", o32.visual_tokens, o64.visual_tokens,
                                ref->tensor("visual_tokens").index_select(0, torch::tensor({0, 2})),
                                ref->tensor("visual_tokens.fp64").index_select(0, torch::tensor({0, 2})));
  // the workflow is not the base here: the text row's logits differ from the frozen LLM's
  EXPECT_GT(testing::max_abs(ref->tensor("logits"), b.attention_mask), 1.0) << label;
}

TEST(IaaParity, InsertedAfterLayersZeroAndOneMatchesTheTransformersReference) {
  run_case("IAA mm, inserted after 0 and 1, mlp2x_gelu", {}, "0,1", 31);
}

TEST(IaaParity, InsertedAfterTheLastLayerWithALinearProjectorMatchesTheTransformersReference) {
  run_case("IAA g, inserted after 2, linear projector, vision layer -1",
           {"adapter.iaa.insert_layers=[2]", "adapter.iaa.workflow=g", "vision.projector=linear", "vision.layer=-1"},
           "2", 32);
}

}  // namespace test_iaa_parity
}  // namespace mmtune::train
