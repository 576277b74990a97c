// Plain LoRA through the hook interface: identity at init, disable = base, only adapter weights
// train, and parity with the Python peft library on the same base and adapter weights.
#include <gtest/gtest.h>

#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/lora.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/model/weights.h>

#include "numerics.h"
#include "test_utils.h"

namespace mmtune::adapters {
namespace test_lora {

using mmtune::testing::TempDir;

const std::string kModel = std::string(testing::kTinyDir) + "/llama-gqa";

config::AdapterConfig lora_config(int64_t rank, double alpha, std::vector<std::string> targets) {
  config::AdapterConfig a;
  a.family = "lora";
  auto c = std::make_unique<LoraConfig>();
  c->rank = rank;
  c->alpha = alpha;
  c->dropout = 0.0;
  c->targets = std::move(targets);
  a.options["lora"] = std::move(c);
  return a;
}

torch::Tensor logits_of(model::LlamaDecoderImpl& m, const torch::Tensor& ids, const torch::Tensor& mask) {
  ForwardContext ctx;
  return m.forward({ids, {}, mask, {}}, nullptr, ctx);
}

const std::vector<std::string> kAll{"q", "k", "v", "o", "gate", "up", "down"};

TEST(Lora, FreshAdapterIsTheIdentityAndDisabledIsTheBase) {
  auto base = model::load_llama(kModel, torch::kFloat32);
  const torch::Tensor ids = torch::randint(3, 400, {2, 9}), mask = torch::ones({2, 9}, torch::kLong);
  torch::NoGradGuard ng;
  const torch::Tensor before = logits_of(*base, ids, mask);
  const auto trainable = attach_to_llama(*base, lora_config(4, 8, kAll));
  EXPECT_EQ(trainable.size(), 3u * 7 * 2);
  EXPECT_TRUE(torch::equal(logits_of(*base, ids, mask), before)) << "B = 0 must leave the model unchanged";
  for (auto& p : trainable) p.normal_();  // now the adapter changes the output ...
  EXPECT_FALSE(torch::allclose(logits_of(*base, ids, mask), before));
  set_adapters_enabled(*base, false);     // ... unless disabled
  EXPECT_TRUE(torch::equal(logits_of(*base, ids, mask), before));
}

TEST(Lora, OneOptimiserStepChangesOnlyAdapterParameters) {
  auto m = model::load_llama(kModel, torch::kFloat32);
  std::vector<std::pair<std::string, torch::Tensor>> frozen;
  for (const auto& p : m->named_parameters()) frozen.emplace_back(p.key(), p.value().clone());
  const auto trainable = attach_to_llama(*m, lora_config(4, 8, {"q", "v", "down"}));
  for (const auto& p : m->parameters()) {
    const bool is_adapter = std::any_of(trainable.begin(), trainable.end(), [&](const torch::Tensor& t) { return t.is_same(p); });
    EXPECT_EQ(p.requires_grad(), is_adapter);
  }
  torch::optim::SGD opt(trainable, torch::optim::SGDOptions(0.1));
  const torch::Tensor ids = torch::randint(3, 400, {2, 9});
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    const torch::Tensor logits = logits_of(*m, ids, {});
    torch::nn::functional::cross_entropy(logits.reshape({-1, 400}), ids.reshape({-1})).backward();
    opt.step();
  }
  for (const auto& [name, before] : frozen) {
    EXPECT_TRUE(torch::equal(m->named_parameters()[name], before)) << name << " changed";
  }
  bool moved = false;
  for (const auto& p : trainable) moved |= p.abs().sum().item<double>() > 0 && p.grad().defined();
  EXPECT_TRUE(moved);
}

TEST(Lora, MatchesThePeftLibraryOnTheSameWeights) {
  TempDir d;
  const auto r = testing::run_process({testing::kPython, std::string(testing::kSourceDir) + "/scripts/reference/lora_reference.py",
                                       "--model", kModel, "--out", d.path()}, {}, std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto m = model::load_llama(kModel, torch::kFloat32);
  attach_to_llama(*m, lora_config(4, 8, kAll));
  // PEFT names: base_model.model.model.layers.{i}.{self_attn|mlp}.{p}_proj.lora_{A|B}.weight
  const auto peft = io::SafetensorsFile::open(d.path() + "/adapter_model.safetensors");
  torch::NoGradGuard ng;
  int copied = 0;
  for (int64_t i = 0; i < m->config().num_layers; ++i) {
    auto blocks = m->block(i).block_adapters();
    ASSERT_EQ(blocks.size(), 1u);
    auto* lora = dynamic_cast<LoraBlockImpl*>(blocks[0].get());
    ASSERT_NE(lora, nullptr);
    for (const auto& p : kAll) {
      const std::string group = (p == "gate" || p == "up" || p == "down") ? "mlp" : "self_attn";
      const std::string prefix = "base_model.model.model.layers." + std::to_string(i) + "." + group + "." + p + "_proj.";
      auto [a, b] = lora->pair(projection_from_name(p));
      a.copy_(peft->tensor(prefix + "lora_A.weight"));
      b.copy_(peft->tensor(prefix + "lora_B.weight"));
      copied += 2;
    }
  }
  EXPECT_EQ(copied, static_cast<int>(peft->names().size()));
  // float32, then the same model in float64 (LoRA computes in its master weights' dtype); the
  // reference gives both (tests/numerics.h)
  const auto ref = io::SafetensorsFile::open(d.path() + "/ref.safetensors");
  const torch::Tensor mask = ref->tensor("attention_mask").clone(), ids = ref->tensor("input_ids").clone();
  const torch::Tensor logits = logits_of(*m, ids, mask);
  auto m64 = testing::llama_fp64_twin(kModel, lora_config(4, 8, kAll), *m);
  testing::expect_oracle_parity("LoRA vs peft: logits", logits, logits_of(*m64, ids, mask), ref->tensor("logits"),
                                ref->tensor("logits.fp64"), mask);
}

}  // namespace test_lora
}  // namespace mmtune::adapters
