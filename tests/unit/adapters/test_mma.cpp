// LaVIN's MM-adapter pieces: fresh adapters are the identity in the LLM and the ViT, the routing
// follows the spec (per-sample from token 0; LaVIN's CLIP quirk per token position of sample 0),
// the up-projections are block-diagonal, and the LaVIN recipes have the official parameter counts.
#include <gtest/gtest.h>

#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/mma.h>
#include <mmtune/config/load.h>
#include <mmtune/model/sizes.h>
#include <mmtune/model/weights.h>
#include <mmtune/train/dry_run.h>

#include "test_utils.h"

namespace mmtune::adapters {
namespace test_mma {

config::AdapterConfig mma(const std::string& router_mode = "per_sample_cls", const std::string& llm = "attn") {
  config::AdapterConfig a;
  a.family = "mma";
  auto c = std::make_unique<MmaConfig>();
  c->clip_router_mode = router_mode;
  c->llm_placement = llm;
  c->dropout = 0.0;
  a.options["mma"] = std::move(c);
  return a;
}

TEST(Mma, FreshAdaptersAreTheIdentityInTheLlmAndTheVit) {
  const std::string tiny = testing::kTinyDir;
  for (const std::string placement : {"attn", "block"}) {
    auto llm = model::load_llama(tiny + "/llama-gqa", torch::kFloat32);
    auto vit = model::load_clip_vision(tiny + "/clip-vit", torch::kFloat32);
    const torch::Tensor ids = torch::randint(3, 400, {2, 10});
    const torch::Tensor pixels = torch::randn({2, 3, 32, 32});
    ForwardContext ctx;
    torch::NoGradGuard ng;
    const torch::Tensor base_logits = llm->forward({ids, {}, {}, {}}, nullptr, ctx);
    const torch::Tensor base_states = vit->forward(pixels, {-1}, ctx)[0];
    const auto t1 = attach_to_llama(*llm, mma("per_sample_cls", placement));
    const auto t2 = attach_to_vision(*vit, mma());
    // 3 layers x (conv_A, conv_B, conv_D, router) x (weight, bias), twice in block placement
    EXPECT_EQ(t1.size(), 3u * 8 * (placement == "block" ? 2 : 1));
    EXPECT_EQ(t2.size(), 4u * 8);
    EXPECT_TRUE(torch::equal(llm->forward({ids, {}, {}, {}}, nullptr, ctx), base_logits)) << placement;
    EXPECT_TRUE(torch::equal(vit->forward(pixels, {-1}, ctx)[0], base_states));
  }
}

TEST(Mma, AdapterMathMatchesTheSpec) {
  MmaConfig c;
  c.dim = 4;
  c.scale = 0.5;
  c.temperature = 10.0;
  c.dropout = 0.0;
  MmaAdapterImpl a(6, c, /*vision=*/false, "mma.llm.0", torch::kCPU);
  torch::NoGradGuard ng;
  for (auto& p : a.parameters()) p.normal_();
  const auto params = a.named_parameters();
  const torch::Tensor x = torch::randn({2, 3, 6});
  ForwardContext ctx;
  const torch::Tensor y = a.at(Site::kPreAttn, x, ctx);
  // the spec, written out: w = softmax(router(x[:, 0]) / t); hid = x A^T + a;
  // out = x + s * (w0 * UpB(hid) + w1 * UpD(hid)), Up block-diagonal over 2 groups
  const torch::Tensor w = ((x.select(1, 0).matmul(params["adapter_attn.expert_weights.weight"].t()) + params["adapter_attn.expert_weights.bias"]) / 10.0).softmax(-1);
  const torch::Tensor hid = x.matmul(params["adapter_attn.conv_A.weight"].squeeze(-1).t()) + params["adapter_attn.conv_A.bias"];
  auto up = [&](const std::string& n) {
    const torch::Tensor W = params["adapter_attn." + n + ".weight"].squeeze(-1);  // [6, 2]
    torch::Tensor full = torch::zeros({6, 4});                   // block-diagonal [C, h]
    full.narrow(0, 0, 3).narrow(1, 0, 2).copy_(W.narrow(0, 0, 3));
    full.narrow(0, 3, 3).narrow(1, 2, 2).copy_(W.narrow(0, 3, 3));
    return hid.matmul(full.t()) + params["adapter_attn." + n + ".bias"];
  };
  const torch::Tensor expected = x + 0.5 * (w.select(1, 0).view({2, 1, 1}) * up("conv_B") + w.select(1, 1).view({2, 1, 1}) * up("conv_D"));
  // sums of at most 6 products of O(1) values in another order (grouped 1x1 conv vs a dense
  // block-diagonal matmul): a few fp32 ulps (6e-8 each) on any CPU; 1e-6 = ~16 ulps
  EXPECT_TRUE(torch::allclose(y, expected, 1e-6, 1e-6));
  // decode steps reuse the routing cached in the first pass
  ctx.prefill = false;
  const torch::Tensor step = torch::randn({2, 1, 6});
  const torch::Tensor w_cached = ctx.state.at("mma.llm.0.attn");
  EXPECT_TRUE(torch::equal(w_cached.squeeze(1), w));
  const torch::Tensor y2 = a.at(Site::kPreAttn, step, ctx);
  ForwardContext fresh;  // routing the step on its own token would give other weights
  const torch::Tensor own = a.at(Site::kPreAttn, step, fresh);
  EXPECT_EQ(y2.sizes(), step.sizes());
  EXPECT_FALSE(torch::allclose(y2, own)) << "the decode step must use the cached routing, not its own token";
}

TEST(Mma, ClipRoutingPerSampleOrLavinsBatchQuirk) {
  MmaConfig c;
  c.dropout = 0.0;
  RepAdapterRouterImpl r(8, c, torch::kCPU);
  torch::NoGradGuard ng;
  const torch::Tensor x = torch::randn({3, 5, 8});  // [B, N, W]
  const torch::Tensor a = r.route(x, false), b = r.route(x, true);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{3, 1, 2}));  // one pair per sample, from its CLS token
  EXPECT_EQ(b.sizes(), (std::vector<int64_t>{1, 5, 2}));  // one pair per position, from sample 0 only
  EXPECT_TRUE(torch::allclose(b[0][0], a[0][0]));         // position 0 of sample 0 is sample 0's CLS
  torch::Tensor x2 = x.clone();
  x2[2].normal_();  // another sample changes: the quirk's routing does not, the per-sample one does for it
  EXPECT_TRUE(torch::equal(r.route(x2, true), b));
  EXPECT_FALSE(torch::equal(r.route(x2, false)[2], a[2]));
  // the adapter picks the mode from clip_router_mode (vision blocks only)
  c.clip_router_mode = "official_lnd_quirk";
  MmaAdapterImpl quirk(8, c, /*vision=*/true, "v", torch::kCPU);
  for (auto& p : quirk.parameters()) p.normal_();
  c.clip_router_mode = "per_sample_cls";
  MmaAdapterImpl per_sample(8, c, /*vision=*/true, "v", torch::kCPU);
  for (auto& p : per_sample.parameters()) p.normal_();
  torch::Tensor x0 = x.clone();
  x0[0].normal_();  // only sample 0 changes
  ForwardContext ctx;
  EXPECT_FALSE(torch::allclose(quirk.at(Site::kPreAttn, x, ctx)[1], quirk.at(Site::kPreAttn, x0, ctx)[1]))
      << "under the quirk sample 0 decides the routing of sample 1";
  EXPECT_TRUE(torch::equal(per_sample.at(Site::kPreAttn, x, ctx)[1], per_sample.at(Site::kPreAttn, x0, ctx)[1]))
      << "per sample, sample 1 does not depend on sample 0";
}

TEST(Mma, BlockPlacementHasItsOwnAdapterBeforeTheMlp) {
  MmaConfig c;
  c.llm_placement = "block";
  MmaAdapterImpl a(8, c, false, "l", torch::kCPU);
  const auto names = a.named_parameters().keys();
  EXPECT_EQ(names.size(), 16u);
  EXPECT_TRUE(a.named_parameters().contains("adapter_mlp.conv_B.weight"));
  EXPECT_TRUE(a.uses(Site::kPreMlp));
  c.llm_placement = "attn";
  EXPECT_FALSE(MmaAdapterImpl(8, c, false, "l", torch::kCPU).uses(Site::kPreMlp));
}

TEST(Mma, DryRunGivesTheOfficialParameterCounts) {
  for (const auto& [file, expected] : {std::pair{"lavin/scienceqa-7b.yaml", 3781296}, {"lavin/scienceqa-13b.yaml", 5390080}}) {
    const auto cfg = config::load_config(std::string(testing::kSourceDir) + "/configs/" + file, {}, builtin_adapters());
    const auto d = train::dry_run(cfg);
    EXPECT_EQ(d.trainable, expected) << file;
  }
}

TEST(Sizes, ConfigArchChoicesNameEveryShape) {
  const auto keys = config::list_keys(builtin_adapters());
  for (const auto& k : keys) {
    if (k.path == "model.arch") {
      for (const auto& n : model::llama_arch_names()) EXPECT_NE(k.type.find(n), std::string::npos) << n;
    }
    if (k.path == "vision.arch") {
      for (const auto& n : model::clip_arch_names()) EXPECT_NE(k.type.find(n), std::string::npos) << n;
    }
  }
}

}  // namespace test_mma
}  // namespace mmtune::adapters
