// IAA on the tiny checkpoints (issue 8, model side): inserted layers are owned copies of the frozen
// layers, the Text workflow is the bare LLM bit for bit (also after the MM workflow trained), zero
// gates give the base stream, several workflows share one base, cached decoding, adapter files,
// the projector over patch features at the image slots, and the Llama-3-8B dry-run counts.
#include <gtest/gtest.h>

#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/iaa.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/adapters/workflows.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/train/dry_run.h>
#include <mmtune/runtime/lm_loss.h>

#include <filesystem>
#include <set>

#include "fixtures.h"
#include "numerics.h"
#include "test_utils.h"

namespace mmtune::train {
namespace test_iaa {

using adapters::ForwardContext;
using adapters::IaaDecoderAdapterImpl;

constexpr int64_t kPatches = 16;  // tiny ViT: 32 px / patch 8 -> 4 x 4 patch tokens

config::RunConfig tiny_config(std::vector<std::string> extra = {}, const std::string& llm = "llama-gqa") {
  const std::string tiny = testing::kTinyDir;
  std::vector<std::string> o{"model.path=" + tiny + "/" + llm, "vision.path=" + tiny + "/clip-vit"};
  o.insert(o.end(), extra.begin(), extra.end());
  return config::load_config(std::string(testing::kSourceDir) + "/configs/iaa/tiny.yaml", o,
                             adapters::builtin_adapters());
}

IaaDecoderAdapterImpl& workflow(runtime::BuiltModel& m, const std::string& name = "mm") {
  auto* w = adapters::find_workflow(m.model->llm(), name);
  if (!w) throw Error("test: no workflow " + name);
  return *w;
}

// A right-padded LLaVA-style batch: rows 0 and 2 have images (BOS, 2 tokens, 16 slots, text),
// row 1 is text-only and 4 positions shorter (tests/fixtures.h).
data::Batch llava_batch(uint64_t seed = 7) { return testing::mixed_image_batch(kPatches, 32, seed); }

torch::Tensor logits_of(runtime::BuiltModel& m, const data::Batch& b) {
  ForwardContext ctx;
  torch::NoGradGuard ng;
  return m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
}

// Token ids only (no images): what every workflow, Text included, can run. [2, 12] with padding.
struct TextInput {
  torch::Tensor ids, mask;
};
TextInput text_input() {
  torch::manual_seed(3);
  TextInput t{torch::randint(3, 400, {2, 12}), torch::ones({2, 12}, torch::kBool)};
  t.mask[1].narrow(0, 9, 3).fill_(false);
  return t;
}

torch::Tensor llm_logits(model::LlamaDecoderImpl& llm, const TextInput& t) {
  ForwardContext ctx;
  torch::NoGradGuard ng;
  return llm.forward({t.ids, {}, t.mask, {}}, nullptr, ctx);
}

// Moves every workflow parameter a little (a "trained" workflow, deterministic per seed).
void perturb(IaaDecoderAdapterImpl& w, uint64_t seed, double scale = 0.05) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& p : w.parameters()) p.add_(torch::randn_like(p) * scale);
}

std::map<std::string, torch::Tensor> snapshot(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters(true)) out[p.key()] = p.value().detach().clone();
  return out;
}

adapters::VisualPath visual_path(runtime::BuiltModel& m, const config::RunConfig& cfg) {
  return {m.model->vision().config().hidden_size, cfg.vision.projector, cfg.vision.projector_hidden};
}

TEST(Iaa, ProjectorNamesAndOptionsAreChecked) {
  EXPECT_EQ(adapters::projector_depth("linear"), 1);
  EXPECT_EQ(adapters::projector_depth("mlp2x_gelu"), 2);
  EXPECT_EQ(adapters::projector_depth("mlp3x_gelu"), 3);
  EXPECT_EQ(adapters::projector_depth("mlp0x_gelu"), 0);
  EXPECT_EQ(adapters::projector_depth("mlp_silu"), 0);
  EXPECT_EQ(adapters::projector_depth("mlp2x_gelu "), 0);
  // a workflow name becomes a module name and cache keys: identifiers only, never "text"
  for (const std::string bad : {"text", "M.M", ""}) {
    EXPECT_THROW(tiny_config({"adapter.iaa.workflow=" + bad}), ConfigError) << bad;
  }
  EXPECT_THROW(tiny_config({"adapter.iaa.trainable=[projectr]"}), ConfigError);
  // IAA-14's default set does not fit a 3-layer model: a named error at build time
  try {
    runtime::build_model(tiny_config({"adapter.iaa.insert_layers=[0, 1, 5]"}), runtime::Weights::kLoad);
    ADD_FAILURE() << "no error for layer 5 of 3";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("names layer 5, but the model has 3 layers"), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty());
  }
  // LaVIN's neck is not an IAA projector
  EXPECT_THROW(runtime::build_model(tiny_config({"vision.projector=mlp_silu"}), runtime::Weights::kLoad), Error);
  // issue 20: vision.layer 99 was "torch: hidden state 99 out of range" in the first forward
  for (const std::string layer : {"99", "-6", "5"}) {
    try {
      runtime::build_model(tiny_config({"vision.layer=" + layer}), runtime::Weights::kLoad);
      ADD_FAILURE() << "no error for vision.layer " << layer << " of a 4-block ViT";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("vision.layer " + layer + " is not a hidden state of this 4-block ViT"),
                std::string::npos) << e.what();
      EXPECT_NE(e.hint().find("use 0..4 or -1..-5"), std::string::npos) << e.hint();
    }
  }
  EXPECT_NO_THROW(runtime::build_model(tiny_config({"vision.layer=-5"}), runtime::Weights::kLoad));  // the embeddings
  // issue 20: vision.image_size 100000 ended in std::bad_alloc while preprocessing the first picture
  try {
    runtime::build_model(tiny_config({"vision.image_size=100000"}), runtime::Weights::kLoad);
    ADD_FAILURE() << "no error for vision.image_size 100000 with a 32 px ViT";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("vision.image_size is 100000 but the ViT takes 32 px pictures"),
              std::string::npos) << e.what();
    EXPECT_EQ(e.hint(), "set vision.image_size: 32");
  }
}

TEST(Iaa, InsertedLayersAndOverridesAreOwnedCopiesOfTheBase) {
  for (const std::string llm : {"llama-gqa", "llama-mha-tied"}) {
    runtime::BuiltModel m = runtime::build_model(tiny_config({}, llm), runtime::Weights::kLoad);
    auto& base = m.model->llm();
    auto& w = workflow(m);
    ASSERT_EQ(w.insert_layers(), (std::vector<int64_t>{0, 1}));
    int compared = 0;
    for (int64_t k = 0; k < 2; ++k) {
      const auto src = base.block(w.insert_layers()[k]).named_parameters(true);
      const auto dst = w.inserted(k).named_parameters(true);
      ASSERT_EQ(src.size(), dst.size());
      for (const auto& p : dst) {
        const torch::Tensor& s = src[p.key()];
        EXPECT_TRUE(torch::equal(p.value(), s)) << llm << " layer " << k << " " << p.key();
        EXPECT_NE(p.value().data_ptr(), s.data_ptr()) << llm << " layer " << k << " " << p.key() << " aliases the base";
        EXPECT_TRUE(p.value().requires_grad());
        EXPECT_FALSE(s.requires_grad());
        ++compared;
      }
    }
    EXPECT_EQ(compared, 2 * 9);  // q k v o gate up down + 2 norms per layer
    const auto bp = base.named_parameters(true);
    const torch::Tensor embed = bp["model.embed_tokens.weight"];
    const torch::Tensor head = bp.contains("lm_head.weight") ? bp["lm_head.weight"] : embed;  // tied: the embedding
    for (const auto& [mine, theirs] : {std::pair{w.token_weights().embedding, embed}, {w.token_weights().head, head},
                                       {w.token_weights().final_norm, bp["model.norm.weight"]}}) {
      EXPECT_TRUE(torch::equal(mine, theirs)) << llm;
      EXPECT_NE(mine.data_ptr(), theirs.data_ptr()) << llm;
    }
    EXPECT_NE(w.token_weights().embedding.data_ptr(), w.token_weights().head.data_ptr()) << llm << ": the head is its own tensor";
    // frozen layer 2 gets nothing inserted after it
    ForwardContext ctx;
    EXPECT_TRUE(w.after_layer(2, ctx).empty());
    ASSERT_EQ(w.after_layer(1, ctx).size(), 1u);
    EXPECT_EQ(w.after_layer(1, ctx)[0].cache_key, "iaa.mm.1");
  }
}

TEST(Iaa, TrainableDecidesWhatTrains) {
  // stage 1 trains the projector alone; everything the workflow copied stays frozen
  runtime::BuiltModel s1 = runtime::build_model(tiny_config({"adapter.iaa.trainable=[projector]"}), runtime::Weights::kLoad);
  std::set<std::string> names;
  for (const auto& [n, t] : s1.trainable) names.insert(n);
  EXPECT_EQ(names, (std::set<std::string>{"llm.adapters.iaa_mm.mm_projector.0.weight", "llm.adapters.iaa_mm.mm_projector.0.bias",
                                          "llm.adapters.iaa_mm.mm_projector.2.weight", "llm.adapters.iaa_mm.mm_projector.2.bias"}));
  // fine-tune: everything of the workflow, nothing of the base
  runtime::BuiltModel ft = runtime::build_model(tiny_config(), runtime::Weights::kLoad);
  int64_t n = 0;
  for (const auto& [name, t] : ft.trainable) {
    EXPECT_EQ(name.rfind("llm.adapters.iaa_mm.", 0), 0u) << name;
    n += t.numel();
  }
  const int64_t layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 176 + 2 * 64;  // q, o + k, v (GQA: 2 x 16) + MLP + norms
  const int64_t projector = 64 * 64 + 64 + 64 * 64 + 64;
  EXPECT_EQ(n, 2 * layer + 2 * 400 * 64 + 64 + projector);
  // a linear projector has LLaVA's single-Linear names
  runtime::BuiltModel lin = runtime::build_model(tiny_config({"vision.projector=linear", "adapter.iaa.trainable=[projector]"}), runtime::Weights::kLoad);
  ASSERT_EQ(lin.trainable.size(), 2u);
  EXPECT_EQ(lin.trainable[0].first, "llm.adapters.iaa_mm.mm_projector.weight");
}

TEST(Iaa, TextWorkflowIsTheBareLlmBitwiseAlsoAfterTheMmWorkflowTrained) {
  auto cfg = tiny_config();
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  auto bare = model::load_llama(std::string(testing::kTinyDir) + "/llama-gqa", torch::kFloat32);
  const TextInput t = text_input();
  const torch::Tensor reference = llm_logits(*bare, t);
  auto& llm = m.model->llm();
  adapters::select_workflow(llm, "text");
  EXPECT_EQ(adapters::active_workflow(llm), "text");
  EXPECT_TRUE(torch::equal(llm_logits(llm, t), reference));

  // three optimiser steps on the MM workflow over a multimodal batch
  adapters::select_workflow(llm, "mm");
  const auto before = snapshot(*m.model);
  std::vector<torch::Tensor> params;
  for (auto& [n, p] : m.trainable) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.0));
  const data::Batch b = llava_batch();
  for (int step = 0; step < 3; ++step) {
    ForwardContext ctx;
    opt.zero_grad();
    runtime::lm_loss_sum(m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx), b.labels).backward();
    opt.step();
  }
  std::set<std::string> trainable;
  for (auto& [n, p] : m.trainable) trainable.insert(n);
  int changed = 0, frozen = 0;
  for (const auto& p : m.model->named_parameters(true)) {
    if (trainable.count(p.key())) {
      changed += !torch::equal(p.value(), before.at(p.key()));
    } else {
      ++frozen;
      EXPECT_TRUE(torch::equal(p.value(), before.at(p.key()))) << p.key() << " is frozen but changed";
      EXPECT_FALSE(p.value().grad().defined()) << p.key() << " is frozen but got a gradient";
    }
  }
  EXPECT_GT(frozen, 50);
  EXPECT_EQ(changed, static_cast<int>(trainable.size()));  // every workflow tensor got a gradient and moved

  adapters::select_workflow(llm, "text");
  EXPECT_TRUE(torch::equal(llm_logits(llm, t), reference));
  adapters::select_workflow(llm, "mm");
  EXPECT_FALSE(torch::allclose(llm_logits(llm, t), reference, 1e-3, 1e-3));
}

TEST(Iaa, FreshlyCopiedLayersAreNotTheIdentity) {
  // the copies run frozen layers 0 and 1 twice: not the base, however exactly they were copied
  runtime::BuiltModel m = runtime::build_model(tiny_config(), runtime::Weights::kLoad);
  auto& llm = m.model->llm();
  const TextInput t = text_input();
  const torch::Tensor mm = llm_logits(llm, t);
  adapters::select_workflow(llm, "text");
  const torch::Tensor text = llm_logits(llm, t);
  EXPECT_FALSE(torch::allclose(mm, text, 1e-2, 1e-2)) << (mm - text).abs().max().item<double>();
  EXPECT_TRUE(mm.isfinite().all().item<bool>());
}

TEST(Iaa, ZeroGatesGiveTheBaseStreamBitwise) {
  const TextInput t = text_input();
  for (const std::string llm_name : {"llama-gqa", "llama-mha-tied"}) {
    for (const std::string gate : {"parallel", "gated"}) {
      for (const std::string type : {"scalar", "linear"}) {
        SCOPED_TRACE(llm_name + " " + gate + " " + type);
        runtime::BuiltModel m = runtime::build_model(tiny_config({"adapter.iaa.gate=" + gate, "adapter.iaa.gate_type=" + type}, llm_name),
                                   runtime::Weights::kLoad);
        auto& llm = m.model->llm();
        auto& w = workflow(m);
        const torch::Tensor fresh = llm_logits(llm, t);  // zero-initialised gates
        {
          // trained inserted layers behind closed gates change nothing either
          torch::manual_seed(5);
          torch::NoGradGuard ng;
          for (const auto& p : w.named_parameters(true)) {
            if (p.key().rfind("layers.", 0) == 0 && p.key().find(".gate.") == std::string::npos)
              p.value().add_(torch::randn_like(p.value()) * 0.05);
          }
        }
        const torch::Tensor mm = llm_logits(llm, t);
        adapters::select_workflow(llm, "text");
        const torch::Tensor text = llm_logits(llm, t);
        EXPECT_TRUE(torch::equal(fresh, text)) << (fresh - text).abs().max().item<double>();
        EXPECT_TRUE(torch::equal(mm, text)) << (mm - text).abs().max().item<double>();
        // an open gate lets the inserted layers in
        adapters::select_workflow(llm, "mm");
        {
          torch::NoGradGuard ng;
          for (const auto& p : w.named_parameters(true)) {
            if (p.key().find(".gate.") != std::string::npos) p.value().fill_(type == "scalar" ? 1.0 : 0.05);
          }
        }
        EXPECT_FALSE(torch::allclose(llm_logits(llm, t), text, 1e-3, 1e-3));
      }
    }
  }
  // (b) with a scalar gate of 1 is the final IAA (c): h = y + 1 * (I(y) - y)
  const auto gated_cfg = tiny_config({"adapter.iaa.gate=gated"}), plain_cfg = tiny_config();
  runtime::BuiltModel gated = runtime::build_model(gated_cfg, runtime::Weights::kLoad);
  runtime::BuiltModel plain = runtime::build_model(plain_cfg, runtime::Weights::kLoad);
  {
    torch::NoGradGuard ng;
    for (const auto& p : workflow(gated).named_parameters(true)) {
      if (p.key().find(".gate.") != std::string::npos) p.value().fill_(1.0);
    }
  }
  // y + 1 * (I(y) - y) rounds where I(y) does not: exact in float64, within 4x the fp32 noise in
  // float32 (tests/numerics.h)
  const torch::Tensor a = llm_logits(gated.model->llm(), t), c = llm_logits(plain.model->llm(), t);
  runtime::BuiltModel gated64 = testing::fp64_twin(gated_cfg, gated), plain64 = testing::fp64_twin(plain_cfg, plain);
  testing::expect_same_result("IAA gated with gate 1 vs ungated", a, c, llm_logits(gated64.model->llm(), t),
                              llm_logits(plain64.model->llm(), t));
}

TEST(Iaa, GateHooksComputeTheDocumentedStreams) {
  // the two gated layers of one workflow, called as the decoder calls an inserted block's hooks
  const auto o = torch::TensorOptions().dtype(torch::kFloat32);
  torch::manual_seed(1);
  const torch::Tensor y0 = torch::randn({1, 3, 8}), x0 = torch::randn({1, 3, 8});
  const torch::Tensor y1 = torch::randn({1, 3, 8}), x1 = torch::randn({1, 3, 8});
  using adapters::Site;
  for (const std::string mode : {"gated", "parallel"}) {
    adapters::IaaGate g0(mode, "scalar", 8, "iaa.t", 0, 2, o), g1(mode, "scalar", 8, "iaa.t", 1, 2, o);
    torch::NoGradGuard ng;
    g0->parameters()[0].fill_(0.5);
    g1->parameters()[0].fill_(2.0);
    ForwardContext ctx;
    EXPECT_TRUE(torch::equal(g0->at(Site::kBlockIn, y0, ctx), y0)) << mode;  // the first layer reads the frozen stream
    const torch::Tensor h0 = g0->at(Site::kBlockOut, x0, ctx);
    const torch::Tensor in1 = g1->at(Site::kBlockIn, y1, ctx);
    const torch::Tensor h1 = g1->at(Site::kBlockOut, x1, ctx);
    // the hooks compute these elementwise formulas, maybe fused otherwise: within 1-2 fp32 ulps;
    // allclose's default rtol 1e-5 is ~80 ulps, on any CPU
    if (mode == "gated") {
      EXPECT_TRUE(torch::allclose(h0, y0 + 0.5 * (x0 - y0))) << mode;
      EXPECT_TRUE(torch::equal(in1, y1)) << mode;
      EXPECT_TRUE(torch::allclose(h1, y1 + 2.0 * (x1 - y1))) << mode;
    } else {
      EXPECT_TRUE(torch::allclose(h0, y0 + 0.5 * x0)) << mode;
      EXPECT_TRUE(torch::equal(in1, x0)) << mode << ": the second inserted layer continues the chain";
      EXPECT_TRUE(torch::allclose(h1, y1 + 2.0 * x1)) << mode;
    }
    EXPECT_TRUE(ctx.state.empty()) << mode << ": per-forward values are dropped";
  }
}

// Bytes of every parameter and buffer of `m` (recursively).
int64_t tensor_bytes(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel() * p.element_size();
  for (const auto& b : m.buffers()) n += b.numel() * b.element_size();
  return n;
}

TEST(Iaa, TwoWorkflowsShareOneBaseAndEachGivesWhatItGivesAlone) {
  auto cfg = tiny_config();
  runtime::BuiltModel both = runtime::build_model(cfg, runtime::Weights::kLoad);
  auto& llm = both.model->llm();
  const adapters::AdapterMemory one = adapters::adapter_memory(*both.model, llm);
  adapters::IaaConfig g;
  g.workflow = "g";
  g.insert_layers = {1, 2};
  const auto g_params = adapters::attach_workflow(llm, g, visual_path(both, cfg));
  EXPECT_EQ(adapters::workflow_names(llm), (std::vector<std::string>{"text", "mm", "g"}));
  // memory = base + N x adapter: the base is counted once, each workflow adds its own tensors
  const adapters::AdapterMemory two = adapters::adapter_memory(*both.model, llm);
  EXPECT_EQ(two.base_bytes, one.base_bytes);
  ASSERT_EQ(two.decoder_adapters.size(), 2u);
  EXPECT_EQ(two.decoder_adapters[0], one.decoder_adapters.at(0));
  EXPECT_EQ(two.decoder_adapters[0], (std::pair<std::string, int64_t>{"mm", tensor_bytes(workflow(both, "mm"))}));
  EXPECT_EQ(two.decoder_adapters[1], (std::pair<std::string, int64_t>{"g", tensor_bytes(workflow(both, "g"))}));
  EXPECT_EQ(two.decoder_adapters[1].second, two.decoder_adapters[0].second);  // two inserted layers each
  EXPECT_EQ(two.base_bytes + two.decoder_adapters[0].second + two.decoder_adapters[1].second + two.other_trainable_bytes,
            tensor_bytes(*both.model));
  EXPECT_THROW(adapters::attach_workflow(llm, g, visual_path(both, cfg)), Error);
  EXPECT_THROW(adapters::select_workflow(llm, "grounding"), UsageError);
  perturb(workflow(both, "mm"), 11);
  perturb(workflow(both, "g"), 12);
  // one copy of the base: no frozen tensor is held twice
  std::set<const void*> storages;
  int64_t frozen = 0;
  for (const auto& p : llm.named_parameters(true)) {
    if (p.key().rfind("adapters.", 0) == 0) continue;
    EXPECT_TRUE(storages.insert(p.value().data_ptr()).second) << p.key();
    ++frozen;
  }
  EXPECT_EQ(frozen, 3 * 9 + 3);

  const data::Batch b = llava_batch();
  adapters::select_workflow(llm, "mm");
  EXPECT_EQ(adapters::active_workflow(llm), "mm");
  const torch::Tensor mm = logits_of(both, b);
  adapters::select_workflow(llm, "g");
  EXPECT_EQ(adapters::active_workflow(llm), "g");
  const torch::Tensor gl = logits_of(both, b);
  EXPECT_FALSE(torch::allclose(mm, gl, 1e-3, 1e-3));
  adapters::select_workflow(llm, "text");
  auto bare = model::load_llama(std::string(testing::kTinyDir) + "/llama-gqa", torch::kFloat32);
  const TextInput t = text_input();
  EXPECT_TRUE(torch::equal(llm_logits(llm, t), llm_logits(*bare, t)));
  EXPECT_THROW(logits_of(both, b), Error);  // Text has no projector: images need MM or G

  // each workflow alone, with the same weights, gives the same logits bitwise
  for (const auto& [name, expected] : {std::pair{std::string("mm"), mm}, {std::string("g"), gl}}) {
    auto alone_cfg = tiny_config({"adapter.iaa.workflow=" + name, name == "g" ? "adapter.iaa.insert_layers=[1, 2]" : "adapter.iaa.insert_layers=[0, 1]"});
    runtime::BuiltModel alone = runtime::build_model(alone_cfg, runtime::Weights::kLoad);
    const auto src = workflow(both, name).named_parameters(true);
    {
      torch::NoGradGuard ng;
      for (auto& p : workflow(alone, name).named_parameters(true)) p.value().copy_(src[p.key()]);
    }
    EXPECT_TRUE(torch::equal(logits_of(alone, b), expected)) << name;
  }

  // separate KV-cache slots per workflow
  for (const std::string name : {"mm", "g"}) {
    adapters::select_workflow(llm, name);
    model::KVCache cache;
    ForwardContext ctx;
    torch::NoGradGuard ng;
    both.model->prefill(runtime::model_input(b, torch::kCPU), 2, cache, ctx);
    std::vector<std::string> keys;
    for (const auto& [k, v] : cache.extra) keys.push_back(k);
    EXPECT_EQ(keys, (std::vector<std::string>{"iaa." + name + ".0", "iaa." + name + ".1"}));
  }
}

// Prefill the first k tokens, then feed the rest one by one through the KV cache.
torch::Tensor decode_logits(runtime::BuiltModel& m, const data::Batch& b, int64_t k) {
  torch::NoGradGuard ng;
  ForwardContext ctx;
  const int64_t B = b.tokens.size(0), T = b.tokens.size(1);
  auto cache = m.model->llm().new_cache(B, T + 1);
  model::MultimodalInput first = runtime::model_input(b, torch::kCPU);
  first.tokens = first.tokens.narrow(1, 0, k);
  first.attention_mask = first.attention_mask.narrow(1, 0, k);
  first.image_slots = first.image_slots.narrow(1, 0, k);
  std::vector<torch::Tensor> out{m.model->forward(first, &cache, ctx)};
  for (int64_t t = k; t < T; ++t) {
    model::MultimodalInput step;
    step.tokens = b.tokens.narrow(1, t, 1);
    step.attention_mask = b.attention_mask.narrow(1, t, 1);
    out.push_back(m.model->forward(step, &cache, ctx));
  }
  return torch::cat(out, 1);
}

TEST(Iaa, CachedDecodingEqualsTheFullForward) {
  data::Batch b = llava_batch();
  b.attention_mask.fill_(true);
  const int64_t k = 1 + 2 + kPatches + 2;  // prompt: BOS, 2 tokens, slots, 2 text tokens
  for (const std::string gate : {"none", "parallel", "gated"}) {
    const auto cfg = tiny_config({"adapter.iaa.gate=" + gate});
    runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
    perturb(workflow(m), 19);  // open gates too
    const torch::Tensor full = logits_of(m, b);
    const torch::Tensor stepped = decode_logits(m, b, k);
    runtime::BuiltModel m64 = testing::fp64_twin(cfg, m);  // the frozen LLM and ViT, the workflow in float64
    data::Batch b64 = b;
    b64.images = b.images.to(torch::kFloat64);
    // the cached path runs attention over other shapes: exact in float64, fp32 within 4x the noise
    testing::expect_same_result("IAA cached decoding vs the full forward, gate " + gate, stepped, full,
                                decode_logits(m64, b64, k), logits_of(m64, b64));
  }
}

TEST(Iaa, VisualTokensAreTheProjectedPatchFeaturesAtTheSlots) {
  runtime::BuiltModel m = runtime::build_model(tiny_config(), runtime::Weights::kLoad);
  perturb(workflow(m), 29);  // the workflow's embedding is no longer the base's
  EXPECT_EQ(m.model->visual_tokens(), kPatches);
  EXPECT_EQ(m.model->spec().feature, "patch_layer");
  const data::Batch b = llava_batch();
  const auto in = runtime::model_input(b, torch::kCPU);
  torch::NoGradGuard ng;
  ForwardContext c1, c2;
  const auto seq = m.model->assemble(in, c1);
  const torch::Tensor images = b.images.index_select(0, torch::tensor({0, 2}));
  const torch::Tensor feats = m.model->visual_features(images, c2);  // [2, 16, 64] patches of block -2
  EXPECT_EQ(feats.sizes(), (std::vector<int64_t>{2, kPatches, 64}));
  const torch::Tensor visual = workflow(m).project_visual(feats, c2);  // [2, 16, 64]
  {
    // LLaVA's mlp2x_gelu: Linear, exact GELU, Linear
    namespace F = torch::nn::functional;
    auto p = workflow(m).named_parameters(true);
    const torch::Tensor hidden = torch::gelu(F::linear(feats, p["mm_projector.0.weight"], p["mm_projector.0.bias"]));
    const torch::Tensor expected = F::linear(hidden, p["mm_projector.2.weight"], p["mm_projector.2.bias"]);
    // the projector runs these very ops (same kernels, same shapes): 1e-6 leaves room for a
    // different GELU vectorisation of the tail only (~10 ulps of these O(0.1) values)
    EXPECT_TRUE(torch::allclose(visual, expected, 1e-6, 1e-6));
  }
  for (int64_t j = 0; j < 2; ++j) {
    const int64_t r = j == 0 ? 0 : 2;
    EXPECT_TRUE(torch::equal(seq.embeds[r].narrow(0, 3, kPatches), visual[j])) << "row " << r;
  }
  // the text rows around the slots come from the workflow's own embedding table
  EXPECT_TRUE(torch::equal(seq.embeds[1], torch::embedding(workflow(m).token_weights().embedding, b.tokens[1])));
  // a different image changes only the positions from the slots on (causal)
  data::Batch other = b;
  other.images = b.images.clone();
  other.images[0].neg_();
  const torch::Tensor l1 = logits_of(m, b), l2 = logits_of(m, other);
  EXPECT_TRUE(torch::equal(l1[0].narrow(0, 0, 3), l2[0].narrow(0, 0, 3)));
  EXPECT_FALSE(torch::allclose(l1[0].narrow(0, 3, l1.size(1) - 3), l2[0].narrow(0, 3, l1.size(1) - 3)));
  EXPECT_TRUE(torch::equal(l1[1], l2[1]));
}

TEST(Iaa, SaveThenLoadGivesTheSameLogits) {
  auto cfg = tiny_config({"adapter.iaa.gate=gated", "adapter.iaa.gate_type=linear"});
  runtime::BuiltModel a = runtime::build_model(cfg, runtime::Weights::kLoad);
  perturb(workflow(a), 23);
  testing::TempDir dir;
  const std::string out = dir.path() + "/adapter";
  runtime::save_adapter(out, cfg, a);
  const auto file = io::SafetensorsFile::open(out + "/adapter_model.safetensors");
  const std::vector<std::string> listed = file->names();
  const std::set<std::string> names(listed.begin(), listed.end());
  EXPECT_EQ(names.size(), a.trainable.size());
  for (const char* n : {"llm.adapters.iaa_mm.layers.0.self_attn.q_proj.weight", "llm.adapters.iaa_mm.layers.1.mlp.down_proj.weight",
                        "llm.adapters.iaa_mm.layers.1.adapters.gate.weight", "llm.adapters.iaa_mm.embed_tokens.weight",
                        "llm.adapters.iaa_mm.norm.weight", "llm.adapters.iaa_mm.lm_head.weight",
                        "llm.adapters.iaa_mm.mm_projector.2.bias"}) {
    EXPECT_TRUE(names.count(n)) << n;
  }
  const auto overrides = runtime::adapter_overrides(out);
  for (const char* o : {"adapter.family=iaa", "adapter.iaa.workflow=\"mm\"", "adapter.iaa.gate=\"gated\"",
                        "vision.projector=\"mlp2x_gelu\""}) {
    EXPECT_NE(std::find(overrides.begin(), overrides.end(), o), overrides.end()) << o;
  }
  auto cfg2 = tiny_config(overrides);
  runtime::BuiltModel b = runtime::build_model(cfg2, runtime::Weights::kLoad);
  const data::Batch batch = llava_batch();
  EXPECT_FALSE(torch::equal(logits_of(a, batch), logits_of(b, batch)));
  runtime::load_adapter(out, cfg2, b);
  EXPECT_TRUE(torch::equal(logits_of(a, batch), logits_of(b, batch)));
  // another workflow's insertion set does not fit: one named error
  runtime::BuiltModel c = runtime::build_model(tiny_config({"adapter.iaa.gate=gated", "adapter.iaa.gate_type=linear",
                                          "adapter.iaa.insert_layers=[0]"}), runtime::Weights::kLoad);
  try {
    runtime::load_adapter(out, cfg2, c);
    ADD_FAILURE() << "no error";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("unexpected llm.adapters.iaa_mm.layers.1"), std::string::npos) << e.what();
  }
}

TEST(Iaa, StageOneTrainsTheProjectorAndTheLossFalls) {
  runtime::BuiltModel m = runtime::build_model(tiny_config({"adapter.iaa.trainable=[projector]"}), runtime::Weights::kLoad);
  const data::Batch b = llava_batch();
  std::vector<torch::Tensor> params;
  for (auto& [n, p] : m.trainable) params.push_back(p);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.0));
  const auto in = runtime::model_input(b, torch::kCPU);
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    ForwardContext ctx;
    opt.zero_grad();
    const torch::Tensor loss = runtime::lm_loss_sum(m.model->forward(in, nullptr, ctx), b.labels);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, 0.9 * first) << "first " << first << " last " << last;
}

TEST(Iaa, ABf16ModelRunsItsWorkflowInTheModelDtype) {
  // the copies run inside the frozen bf16 stack, so they are bf16; the projector keeps fp32
  // master weights and its output is cast at the slots; an open gate computes in bf16 as well
  runtime::BuiltModel m = runtime::build_model(tiny_config({"dtype=bf16", "adapter.iaa.gate=parallel"}), runtime::Weights::kLoad);
  auto& w = workflow(m);
  for (const auto& p : w.named_parameters(true)) {
    const bool projector = p.key().rfind("mm_projector.", 0) == 0;
    EXPECT_EQ(p.value().scalar_type(), projector ? torch::kFloat32 : torch::kBFloat16) << p.key();
  }
  perturb(w, 31);
  const data::Batch b = llava_batch();
  ForwardContext ctx;
  const torch::Tensor logits = m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
  EXPECT_EQ(logits.scalar_type(), torch::kBFloat16);
  runtime::lm_loss_sum(logits, b.labels).backward();
  for (const auto& [name, p] : m.trainable) EXPECT_TRUE(p.grad().defined()) << name;
}

TEST(Iaa, DryRunOfLlama3IaaFourteenGivesTheSpecCounts) {
  auto load = [](const std::string& file) {
    // model.path / vision.path name no directory here: the shapes come from model.arch / vision.arch
    return config::load_config(std::string(testing::kSourceDir) + "/configs/iaa/" + file, {},
                               adapters::builtin_adapters());
  };
  const config::RunConfig ft = load("llama3-8b-finetune.yaml");
  const config::RunConfig s1 = load("llama3-8b-stage1.yaml");
  EXPECT_DOUBLE_EQ(ft.train.resolved_lr(), 2e-5);
  EXPECT_DOUBLE_EQ(s1.train.resolved_lr(), 1e-3);
  EXPECT_EQ(s1.adapter.selected<adapters::IaaConfig>().trainable, (std::vector<std::string>{"projector"}));
  const int64_t layer = 218'112'000;                  // one Llama-3-8B layer
  const int64_t table = 128'256LL * 4096;             // embedding or head
  const int64_t projector = 1024LL * 4096 + 4096 + 4096LL * 4096 + 4096;  // mlp2x_gelu: 20,979,712
  const int64_t llama3_8b = 8'030'261'248;
  const DryRun d_ft = dry_run(ft);
  EXPECT_EQ(d_ft.trainable, 14 * layer + 2 * table + 4096 + projector);
  EXPECT_EQ(d_ft.trainable, 4'125'224'960);
  const DryRun d_s1 = dry_run(s1);
  EXPECT_EQ(d_s1.trainable, projector);
  EXPECT_EQ(d_s1.trainable, 20'979'712);
  // stage 1 keeps the workflow's copies, frozen: the same model, another split
  EXPECT_EQ(d_s1.frozen + d_s1.trainable, d_ft.frozen + d_ft.trainable);
  EXPECT_EQ(d_s1.frozen - d_ft.frozen, 4'125'224'960 - projector);
  EXPECT_GT(d_ft.frozen, llama3_8b);  // + the ViT
  EXPECT_NE(format_dry_run(d_ft).find("4,125,224,960"), std::string::npos) << format_dry_run(d_ft);
}

}  // namespace test_iaa
}  // namespace mmtune::train
