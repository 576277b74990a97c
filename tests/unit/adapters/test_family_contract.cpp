// The contract every registered adapter family keeps, checked for each entry of the registry (a new
// family is covered by registering it and shipping configs/<dir>/tiny.yaml for it):
//   - fresh block adapters are the identity: the whole model equals itself with them switched off,
//     bitwise (zero-initialised deltas add exact zeros; the sequence assembly, such as LaVIN's modality
//     token or IAA's inserted layers, is the family's and stays);
//   - with block and decoder adapters off the LLM is the checkpoint loaded alone, whatever they learnt;
//   - save -> load gives the same tensors and the same logits, bitwise;
//   - a training step changes adapter tensors only: every frozen parameter and buffer stays bitwise;
//   - `train --dry-run` counts exactly the trainable parameters the built model has;
//   - the family's capabilities hold: a family that cannot checkpoint its blocks refuses
//     train.activation_checkpointing with the key named, one that can builds with it.
// Bitwise where the same kernels run in the same order on the same inputs (no tolerance needed).
#include <gtest/gtest.h>

#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/model/llama.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/lm_loss.h>
#include <mmtune/runtime/multimodal_task.h>
#include <mmtune/train/dry_run.h>
#include <mmtune/train/optim.h>

#include <filesystem>
#include <map>

#include "fixtures.h"
#include "test_utils.h"

namespace mmtune::adapters {
namespace test_family_contract {

namespace fs = std::filesystem;

// The tiny checkpoints in place of the config's paths (the ViT only where the config has one).
std::vector<std::string> on_tiny_models(const std::string& config, std::vector<std::string> extra = {}) {
  const std::string dir = testing::kTinyDir;
  std::vector<std::string> o{"model.path=" + dir + "/llama-gqa"};
  if (testing::read_text(config).find("\nvision:") != std::string::npos) o.push_back("vision.path=" + dir + "/clip-vit");
  o.insert(o.end(), extra.begin(), extra.end());
  return o;
}

// configs/*/tiny.yaml by the family each one configures.
std::map<std::string, std::string> tiny_configs() {
  std::map<std::string, std::string> out;
  for (const auto& d : fs::directory_iterator(std::string(testing::kSourceDir) + "/configs")) {
    const fs::path p = d.path() / "tiny.yaml";
    if (!fs::exists(p)) continue;
    out[config::load_config(p.string(), on_tiny_models(p.string()), builtin_adapters()).adapter.family] = p.string();
  }
  return out;
}

config::RunConfig tiny(const std::string& family, std::vector<std::string> extra = {}) {
  static const std::map<std::string, std::string> configs = tiny_configs();  // read configs/ once
  const std::string path = configs.at(family);
  return config::load_config(path, on_tiny_models(path, std::move(extra)), builtin_adapters());
}

// Every trainable tensor to N(0, 0.02^2) from a fixed seed: an adapter that has learnt something.
void randomise(runtime::BuiltModel& m, uint64_t seed) {
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& [name, t] : m.trainable) t.copy_(at::normal(0.0, 0.02, t.sizes(), gen, t.options()));
}

torch::Tensor text_logits(model::LlamaDecoderImpl& llm, const data::Batch& b) {
  ForwardContext ctx;
  torch::NoGradGuard ng;
  const torch::Tensor ids = b.tokens.narrow(0, 1, 1), mask = b.attention_mask.narrow(0, 1, 1);  // row 1: text only
  return llm.forward({ids, {}, mask, {}}, nullptr, ctx);
}

torch::Tensor logits(runtime::BuiltModel& m, const data::Batch& b) {
  ForwardContext ctx;
  torch::NoGradGuard ng;
  return m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
}

// Two image rows around a text row; for a text-only model (LoRA) the same rows without pictures.
data::Batch batch_for(const runtime::BuiltModel& m) {
  if (m.model->has_vision()) return testing::mixed_image_batch(m.model->visual_tokens());
  data::Batch b = testing::mixed_image_batch(0);
  b.images = torch::Tensor();
  b.image_slots.zero_();
  b.has_image.zero_();
  return b;
}

// Overrides for `family`'s tiny model on an int4 base (group 32, int8 where 32 does not divide), its
// ViT, where it has one, in `vision_mode`.
std::vector<std::string> quantized_base(const std::string& family, const std::string& vision_mode) {
  std::vector<std::string> o{"model.quantize=int4", "model.quant_group=32", "model.quant_fallback=int8"};
  if (!tiny(family).vision.path.empty()) o.push_back("vision.quantize=" + vision_mode);
  return o;
}

class FamilyContract : public ::testing::TestWithParam<std::string> {};

TEST(FamilyContractSetup, EveryRegisteredFamilyHasATinyConfig) {
  const auto configs = tiny_configs();
  for (const auto& e : builtin_adapters().entries())
    EXPECT_TRUE(configs.count(e.name)) << "no configs/*/tiny.yaml sets adapter.family: " << e.name;
}

TEST_P(FamilyContract, FreshBlockAdaptersAreTheIdentity) {
  // the whole model (sequence assembly included), image and text rows: a fresh model equals itself
  // with every block adapter switched off (zero-initialised deltas add exact zeros)
  runtime::BuiltModel m = runtime::build_model(tiny(GetParam()), runtime::Weights::kLoad);
  const data::Batch b = batch_for(m);
  const torch::Tensor fresh = logits(m, b);
  set_adapters_enabled(m.model->llm(), false);
  const torch::Tensor off = logits(m, b);
  EXPECT_TRUE(torch::equal(fresh, off)) << (fresh - off).abs().max().item<double>();
}

TEST_P(FamilyContract, EveryAdapterOffIsTheBase) {
  // block and decoder adapters off: the LLM is the checkpoint loaded alone, whatever the adapters learnt
  runtime::BuiltModel m = runtime::build_model(tiny(GetParam()), runtime::Weights::kLoad);
  randomise(m, 11);
  const data::Batch b = batch_for(m);
  auto base = model::load_llama(std::string(testing::kTinyDir) + "/llama-gqa", torch::kFloat32);
  const torch::Tensor on = text_logits(m.model->llm(), b);
  set_adapters_enabled(m.model->llm(), false);
  set_decoder_adapters_enabled(m.model->llm(), false);
  const torch::Tensor off = text_logits(m.model->llm(), b), alone = text_logits(*base, b);
  EXPECT_TRUE(torch::equal(off, alone)) << (off - alone).abs().max().item<double>();
  EXPECT_FALSE(torch::equal(on, alone)) << "the learnt adapters change nothing on the text row";
}

TEST_P(FamilyContract, SaveThenLoadGivesTheSameTensorsAndLogits) {
  const auto cfg = tiny(GetParam());
  runtime::BuiltModel a = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise(a, 12);
  testing::TempDir d;
  runtime::save_adapter(d.path() + "/adapter", cfg, a);
  runtime::BuiltModel b = runtime::build_model(cfg, runtime::Weights::kLoad);
  runtime::load_adapter(d.path() + "/adapter", cfg, b);
  ASSERT_EQ(a.trainable.size(), b.trainable.size());
  for (size_t i = 0; i < a.trainable.size(); ++i) {
    EXPECT_EQ(a.trainable[i].first, b.trainable[i].first);
    EXPECT_TRUE(torch::equal(a.trainable[i].second, b.trainable[i].second)) << a.trainable[i].first;
  }
  const data::Batch batch = batch_for(a);
  EXPECT_TRUE(torch::equal(logits(a, batch), logits(b, batch)));
}

// One optimiser step of `cfg`'s model: every frozen parameter and buffer (a quantized base's codes
// and scales included) stays bitwise, and adapter tensors change. Returns the quantized projections.
int64_t expect_step_changes_adapters_only(const config::RunConfig& cfg) {
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise(m, 13);  // non-zero everywhere, so every adapter tensor gets a gradient
  std::map<std::string, torch::Tensor> frozen, before;
  for (const auto& p : m.model->named_parameters(true))
    if (!p.value().requires_grad()) frozen[p.key()] = p.value().clone();
  for (const auto& p : m.model->named_buffers(true)) frozen["buffer:" + p.key()] = p.value().clone();
  for (const auto& [name, t] : m.trainable) before[name] = t.detach().clone();
  EXPECT_FALSE(frozen.empty());
  EXPECT_FALSE(before.empty());

  runtime::MultimodalTask task(m, torch::kCPU);
  task.set_training(true);
  const data::Batch b = batch_for(m);
  runtime::StepLoss sl = task.forward(b);
  torch::Tensor loss = sl.loss_sum;
  for (const auto& [name, aux] : sl.aux) loss = loss + aux;
  loss.backward();
  train::AdamW opt(task.trainable_parameters(), {});
  opt.step(1e-3);

  for (const auto& p : m.model->named_parameters(true)) {
    if (frozen.count(p.key())) {
      EXPECT_TRUE(torch::equal(p.value(), frozen[p.key()])) << "frozen " << p.key() << " changed";
    }
  }
  int64_t quantized = 0;
  for (const auto& p : m.model->named_buffers(true)) {
    EXPECT_TRUE(torch::equal(p.value(), frozen["buffer:" + p.key()])) << "buffer " << p.key() << " changed";
    quantized += p.key().size() > 8 && p.key().compare(p.key().size() - 8, 8, ".qweight") == 0;
  }
  int64_t changed = 0;
  for (const auto& [name, t] : m.trainable) changed += !torch::equal(t.detach(), before[name]);
  EXPECT_GT(changed, 0) << "the step changed no adapter tensor";
  return quantized;
}

TEST_P(FamilyContract, ATrainingStepChangesAdapterTensorsOnly) {
  EXPECT_EQ(expect_step_changes_adapters_only(tiny(GetParam())), 0);
}

// The QLoRA recipe for every family: on an int4 base (the ViT's blocks too, where there is one) the
// gradients reach the adapters through the dequantized weights, and the codes never change.
TEST_P(FamilyContract, ATrainingStepOnAQuantizedBaseChangesAdapterTensorsOnly) {
  const auto cfg = tiny(GetParam(), quantized_base(GetParam(), "int4"));
  const int64_t quantized = expect_step_changes_adapters_only(cfg);
  // llama-gqa: 7 Linear layers per block (and an untied head); the tiny ViT: 6 per block
  EXPECT_GE(quantized, 7) << "the base was not quantized";
  if (!cfg.vision.path.empty()) {
    EXPECT_GE(quantized, 7 + 6) << "the ViT was not quantized";
  }
}

TEST_P(FamilyContract, DryRunCountsTheInstantiatedParameters) {
  const auto cfg = tiny(GetParam());
  const runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  int64_t instantiated = 0;
  for (const auto& [name, t] : m.trainable) instantiated += t.numel();
  const train::DryRun d = train::dry_run(cfg);
  EXPECT_EQ(d.trainable, instantiated);
  EXPECT_GT(instantiated, 0);
  // a quantized base has the same frozen weights, held as codes (buffers) instead of parameters
  const train::DryRun q = train::dry_run(tiny(GetParam(), quantized_base(GetParam(), "int8")));
  EXPECT_EQ(q.frozen, d.frozen);
  EXPECT_EQ(q.trainable, d.trainable);
}

TEST_P(FamilyContract, ActivationCheckpointingIsAskedOfTheEntry) {
  const FamilyEntry* entry = builtin_adapters().find(GetParam());
  ASSERT_NE(entry, nullptr);
  const auto cfg = tiny(GetParam(), {"train.activation_checkpointing=true"});
  if (entry->activation_checkpointing_unsupported.empty()) {
    EXPECT_NO_THROW(runtime::check_training_support(cfg));
    return;
  }
  try {
    runtime::check_training_support(cfg);
    FAIL() << GetParam() << " says it cannot checkpoint its blocks, and nothing refused it";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.activation_checkpointing"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(entry->activation_checkpointing_unsupported), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Registered, FamilyContract, ::testing::ValuesIn(builtin_adapters().family_names()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace test_family_contract
}  // namespace mmtune::adapters
