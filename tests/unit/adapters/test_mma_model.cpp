// LaVIN's whole model on the tiny checkpoints (issue 5 acceptance a-d, f, g): the MMA adapters,
// neck and modality token assembled by model::MultimodalLM, checkpoint I/O, mixed batches, and
// an overfitting run with a plain optimiser loop.
#include <gtest/gtest.h>

#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/runtime/generator.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/lm_loss.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "fixtures.h"
#include "numerics.h"
#include "test_utils.h"

namespace mmtune::train {
namespace test_mma_model {

using adapters::ForwardContext;

config::RunConfig tiny_config(std::vector<std::string> extra = {}) {
  const std::string tiny = testing::kTinyDir;
  std::vector<std::string> o{"model.path=" + tiny + "/llama-gqa", "vision.path=" + tiny + "/clip-vit",
                             "adapter.mma.dropout=0.0"};
  o.insert(o.end(), extra.begin(), extra.end());
  return config::load_config(std::string(testing::kSourceDir) + "/configs/lavin/tiny.yaml", o,
                             adapters::builtin_adapters());
}

// A right-padded mixed batch in the batch.h layout: rows 0 and 2 have images (BOS, a 2-token
// prefix, n slots, text), row 1 is text-only and shorter. Token ids are arbitrary tiny-vocab ids.
struct TinyBatch {
  data::Batch batch;
  int64_t n = 0;
};

TinyBatch mixed_batch(int64_t n, int64_t image_size, uint64_t seed = 7) {
  return {testing::mixed_image_batch(n, image_size, seed), n};  // tests/fixtures.h
}

torch::Tensor logits_of(runtime::BuiltModel& m, const data::Batch& b) {
  ForwardContext ctx;
  torch::NoGradGuard ng;
  return m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
}

void randomise_adapters(runtime::BuiltModel& m, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& [name, t] : m.trainable) t.copy_(torch::randn_like(t) * 0.2);
}

std::map<std::string, torch::Tensor> snapshot(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters(true)) out[p.key()] = p.value().detach().clone();
  return out;
}

void set_block_adapters(runtime::BuiltModel& m, bool on) {
  adapters::set_adapters_enabled(m.model->llm(), on);
  auto& vit = m.model->vision();
  for (int64_t i = 0; i < vit.config().num_layers; ++i) {
    for (auto& a : vit.block(i).block_adapters()) a->set_enabled(on);
  }
}

TEST(MmaModel, FreshAdaptersAreTheIdentityOnTheAssembledSequence) {
  // (a) a fresh model equals the same assembled sequence (modality token, prefix, visual tokens,
  // mask) run with every block adapter switched off, bitwise, for image and text samples alike
  for (const std::string placement : {"attn", "block"}) {
    auto cfg = tiny_config({"adapter.mma.llm_placement=" + placement, "adapter.mma.vision_placement=router_block"});
    runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
    EXPECT_EQ(m.model->visual_tokens(), 4);  // tiny ViT: 4 blocks, CLS after each
    const TinyBatch b = mixed_batch(4, 32);
    const torch::Tensor with = logits_of(m, b.batch);
    set_block_adapters(m, false);
    const torch::Tensor without = logits_of(m, b.batch);
    EXPECT_EQ(with.sizes(), (std::vector<int64_t>{3, b.batch.tokens.size(1), 400}));
    EXPECT_TRUE(torch::equal(with, without)) << placement;
    // and the adapters are not a no-op once trained
    randomise_adapters(m, 3);
    set_block_adapters(m, true);
    EXPECT_FALSE(torch::allclose(logits_of(m, b.batch), without)) << placement;
  }
}

TEST(MmaModel, TheModalityTokenIsSeenByNobodyAndSeesOnlyItself) {
  auto cfg = tiny_config();
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise_adapters(m, 5);
  const TinyBatch b = mixed_batch(4, 32);
  const torch::Tensor base = logits_of(m, b.batch);
  // with the block adapters off, the modality embedding reaches nothing (column 0 is masked)
  set_block_adapters(m, false);
  const torch::Tensor off = logits_of(m, b.batch);
  {
    torch::NoGradGuard ng;
    for (auto& [name, t] : m.trainable) {
      if (name.find("adapter_modality_embedding") != std::string::npos) t.mul_(-3.0).add_(1.0);
    }
  }
  EXPECT_TRUE(torch::equal(logits_of(m, b.batch), off));
  // with them on it acts only through the routing: a different modality row changes the outputs
  set_block_adapters(m, true);
  EXPECT_FALSE(torch::allclose(logits_of(m, b.batch), base));
}

TEST(MmaModel, AnOptimiserStepChangesOnlyAdapterParameters) {
  // (b)
  auto cfg = tiny_config();
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  const auto before = snapshot(*m.model);
  std::vector<torch::Tensor> params;
  for (auto& [n, t] : m.trainable) params.push_back(t);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.02));
  const TinyBatch b = mixed_batch(4, 32);
  ForwardContext ctx;
  const torch::Tensor loss = runtime::lm_loss_sum(m.model->forward(runtime::model_input(b.batch, torch::kCPU), nullptr, ctx), b.batch.labels);
  loss.backward();
  opt.step();
  std::set<std::string> trainable;
  for (auto& [n, t] : m.trainable) trainable.insert(n);
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
  // every trainable tensor moves (the zero-initialised up-projections get gradients through the
  // routing weights, the routers through the up-projections once they are non-zero: AdamW's
  // weight decay moves every non-zero tensor anyway)
  EXPECT_GE(changed, static_cast<int>(m.trainable.size()) / 2);
}

TEST(MmaModel, SaveThenLoadGivesTheSameLogits) {
  // (c)
  auto cfg = tiny_config();
  runtime::BuiltModel a = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise_adapters(a, 11);
  testing::TempDir dir;
  const std::string out = dir.path() + "/adapter";
  runtime::save_adapter(out, cfg, a);
  EXPECT_TRUE(std::filesystem::exists(out + "/adapter_model.safetensors"));
  // the recorded options rebuild the same architecture
  auto overrides = runtime::adapter_overrides(out);
  EXPECT_NE(std::find(overrides.begin(), overrides.end(), "adapter.family=mma"), overrides.end());
  auto cfg2 = tiny_config(overrides);
  torch::manual_seed(99);
  runtime::BuiltModel b = runtime::build_model(cfg2, runtime::Weights::kLoad);
  const TinyBatch batch = mixed_batch(4, 32);
  EXPECT_FALSE(torch::equal(logits_of(a, batch.batch), logits_of(b, batch.batch)));
  runtime::load_adapter(out, cfg2, b);
  EXPECT_TRUE(torch::equal(logits_of(a, batch.batch), logits_of(b, batch.batch)));
}

TEST(MmaModel, BadAdapterCheckpointsAreNamedErrors) {
  auto cfg = tiny_config({"adapter.mma.llm_placement=attn"});  // no adapter_mlp tensors in the file
  runtime::BuiltModel a = runtime::build_model(cfg, runtime::Weights::kLoad);
  testing::TempDir dir;
  const std::string out = dir.path() + "/adapter";
  runtime::save_adapter(out, cfg, a);
  auto expect_error = [&](const config::RunConfig& c, const std::string& needle) {
    runtime::BuiltModel b = runtime::build_model(c, runtime::Weights::kLoad);
    try {
      runtime::load_adapter(out, c, b);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_FALSE(e.hint().empty());
    }
  };
  // wrong family
  expect_error(tiny_config({"adapter.family=lora"}), "holds a 'mma' adapter");
  // another base (a different LLM shape)
  expect_error(tiny_config({"model.path=" + std::string(testing::kTinyDir) + "/llama-mha-tied"}), "another base");
  // block placement expects adapter_mlp tensors the file lacks
  expect_error(tiny_config({"adapter.mma.llm_placement=block"}), "missing llm.model.layers.0.adapters.mma.adapter_mlp");
  // a missing directory and a corrupt config
  runtime::BuiltModel b = runtime::build_model(cfg, runtime::Weights::kLoad);
  EXPECT_THROW(runtime::load_adapter(dir.path() + "/nope", cfg, b), CheckpointError);
  std::ofstream(out + "/adapter_config.json") << "{not json";
  EXPECT_THROW(runtime::load_adapter(out, cfg, b), CheckpointError);
  EXPECT_THROW(runtime::adapter_overrides(out), CheckpointError);
  // fields of the wrong type (found by fuzz_adapter_checkpoint: nlohmann's type_error escaped)
  for (const std::string text :
       {R"({"format": "mmtune.adapter", "family": {"x": 1}, "adapter": {}})",
        R"({"format": {"a": 1}, "family": "mma", "adapter": {}})",
        R"({"format": "mmtune.adapter", "family": "mma", "adapter": [], "base_model": 3})",
        R"({"format": "mmtune.adapter", "family": "mma", "adapter": {}, "base_model": {"id": 5}})"}) {
    std::ofstream(out + "/adapter_config.json") << text;
    EXPECT_THROW(runtime::adapter_overrides(out), CheckpointError) << text;
    EXPECT_THROW(runtime::load_adapter(out, cfg, b), CheckpointError) << text;
  }
}

TEST(MmaModel, DisabledAdaptersGiveTheBaseModelBitwise) {
  // (d) trained adapters switched off: the text tokens run through the bare LLM
  auto cfg = tiny_config();
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise_adapters(m, 13);
  const torch::Tensor ids = torch::randint(3, 400, {2, 12});
  model::MultimodalInput in;
  in.tokens = ids;
  ForwardContext c1, c2;
  torch::NoGradGuard ng;
  const torch::Tensor on = m.model->forward(in, nullptr, c1);
  set_block_adapters(m, false);
  m.model->llm().active_decoder_adapter()->set_enabled(false);
  const torch::Tensor off = m.model->forward(in, nullptr, c2);
  auto bare = model::load_llama(std::string(testing::kTinyDir) + "/llama-gqa", torch::kFloat32);
  ForwardContext c3;
  EXPECT_TRUE(torch::equal(off, bare->forward({ids, {}, {}, {}}, nullptr, c3)));
  EXPECT_FALSE(torch::allclose(on.narrow(1, 0, 12), off));
}

TEST(MmaModel, MixedBatchRowsEqualEachSampleAlone) {
  // (f) per_sample_cls: a text-only and image samples in one batch give what each gives alone.
  // Exact in float64 (1e-12); in float32 the batch and the row alone run matmuls of other shapes,
  // whose kernels round differently, so the bound is 4x the fp32-vs-fp64 noise of either
  // (tests/numerics.h).
  auto cfg = tiny_config();
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise_adapters(m, 17);
  const TinyBatch b = mixed_batch(4, 32);
  auto row = [&](const data::Batch& batch, int64_t r, int64_t len) {
    data::Batch one;
    one.tokens = batch.tokens.narrow(0, r, 1).narrow(1, 0, len);
    one.attention_mask = batch.attention_mask.narrow(0, r, 1).narrow(1, 0, len);
    one.image_slots = batch.image_slots.narrow(0, r, 1).narrow(1, 0, len);
    one.images = batch.images.narrow(0, r, 1);
    one.has_image = batch.has_image.narrow(0, r, 1);
    return one;
  };
  // [B, T, V] in the model's dtype: the batch, and each row alone (padded back to T)
  auto run = [&](runtime::BuiltModel& m, const data::Batch& batch) {
    const torch::Tensor together = logits_of(m, batch);
    torch::Tensor alone = torch::zeros_like(together);
    for (int64_t r = 0; r < 3; ++r) {
      const int64_t len = batch.attention_mask[r].sum().item<int64_t>();
      alone[r].narrow(0, 0, len).copy_(logits_of(m, row(batch, r, len))[0]);
    }
    return std::make_pair(together, alone);
  };
  const auto [together32, alone32] = run(m, b.batch);
  runtime::BuiltModel m64 = testing::fp64_twin(cfg, m);
  data::Batch b64 = b.batch;
  b64.images = b.batch.images.to(torch::kFloat64);
  const auto [together64, alone64] = run(m64, b64);
  testing::expect_same_result("MMA row alone vs in a mixed batch", alone32, together32, alone64, together64,
                              b.batch.attention_mask, 1e-12);
  // LaVIN's quirk routes the whole batch's ViT from row 0: the text-only row's zero image then
  // changes nothing for it, but row 2 depends on row 0 (its visual tokens do)
  auto qcfg = tiny_config({"adapter.mma.clip_router_mode=official_lnd_quirk"});
  runtime::BuiltModel q = runtime::build_model(qcfg, runtime::Weights::kLoad);
  EXPECT_TRUE(q.model->spec().whole_batch);
}

TEST(MmaModel, OverfitsSixteenSamplesWithAPlainLoop) {
  // (g) 16 samples, each with its own image and a 3-token answer that only the sample decides
  auto cfg = tiny_config();
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  torch::manual_seed(21);
  const int64_t n = 4, B = 16, T = 1 + 2 + n + 6 + 4;
  data::Batch b;
  b.tokens = torch::randint(3, 400, {B, T});
  b.tokens.select(1, 0).fill_(1);
  b.image_slots = torch::zeros({B, T}, torch::kBool);
  b.has_image = (torch::arange(B) % 4 != 3).to(torch::kLong);  // every 4th sample is text-only
  for (int64_t r = 0; r < B; ++r) {
    if (b.has_image[r].item<int64_t>()) b.image_slots[r].narrow(0, 3, n).fill_(true);
  }
  b.tokens.masked_fill_(b.image_slots, 0);
  // the prompt text is the same for all: only the image (or the modality) tells the samples apart
  b.tokens.narrow(1, 3 + n, 6).copy_(b.tokens[0].narrow(0, 3 + n, 6).unsqueeze(0).expand({B, 6}));
  b.attention_mask = torch::ones({B, T}, torch::kBool);
  b.labels = b.tokens.clone();
  b.labels.narrow(1, 0, T - 4).fill_(data::kIgnoreIndex);
  b.images = torch::randn({B, 3, 32, 32}) * b.has_image.view({B, 1, 1, 1});
  // text-only samples share one answer (nothing tells them apart)
  for (int64_t r = 3; r < B; r += 4) b.labels[r].narrow(0, T - 4, 4).copy_(b.labels[3].narrow(0, T - 4, 4));
  const double tokens = (b.labels.narrow(1, 1, T - 1) != data::kIgnoreIndex).sum().item<double>();
  std::vector<torch::Tensor> params;
  for (auto& [name, t] : m.trainable) params.push_back(t);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(1e-2).weight_decay(0.0));
  double first = 0, loss_v = 0;
  const auto in = runtime::model_input(b, torch::kCPU);
  for (int step = 0; step < 600; ++step) {
    ForwardContext ctx;
    opt.zero_grad();
    const torch::Tensor loss = runtime::lm_loss_sum(m.model->forward(in, nullptr, ctx), b.labels) / tokens;
    loss.backward();
    opt.step();
    loss_v = loss.item<double>();
    if (step == 0) first = loss_v;
    if (loss_v < 0.05) break;
  }
  EXPECT_LT(loss_v, 0.05) << "first loss " << first;
}

}  // namespace test_mma_model
}  // namespace mmtune::train

namespace mmtune::train {
namespace test_mma_model {

// Prefill the first k tokens, then feed the rest one by one through the KV cache.
torch::Tensor decode_logits(runtime::BuiltModel& m, const data::Batch& b, int64_t k) {
  torch::NoGradGuard ng;
  adapters::ForwardContext ctx;
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

TEST(MmaModel, DecodingWithTheCacheMatchesTheFullForwardAndTheLavinOffsetShiftsIt) {
  TinyBatch b = mixed_batch(4, 32);
  b.batch.attention_mask.fill_(true);  // no padding: every row decodes every position
  const int64_t k = 1 + 2 + 4 + 2;     // prompt: BOS, prefix, slots, 2 text tokens
  auto clean_cfg = tiny_config({"adapter.mma.rope_decode_offset=1"});
  runtime::BuiltModel clean = runtime::build_model(clean_cfg, runtime::Weights::kLoad);
  randomise_adapters(clean, 23);
  // the cached path runs attention over other shapes: exact in float64, fp32 within 4x the noise
  const torch::Tensor full = logits_of(clean, b.batch);
  const torch::Tensor stepped = decode_logits(clean, b.batch, k);
  runtime::BuiltModel clean64 = testing::fp64_twin(clean_cfg, clean);
  const torch::Tensor full64 = logits_of(clean64, b.batch), stepped64 = decode_logits(clean64, b.batch, k);
  const double bound = testing::expect_same_result("MMA cached decoding vs the full forward", stepped, full,
                                                   stepped64, full64);
  // LaVIN's off-by-one (spec §1.11): the prefill is the same, the decode steps see other positions
  auto lavin_cfg = tiny_config({"adapter.mma.rope_decode_offset=0"});
  runtime::BuiltModel lavin = runtime::build_model(lavin_cfg, runtime::Weights::kLoad);
  randomise_adapters(lavin, 23);
  const torch::Tensor shifted = decode_logits(lavin, b.batch, k);
  EXPECT_LE(testing::max_abs_diff(shifted.narrow(1, 0, k), full.narrow(1, 0, k)), bound);
  EXPECT_GT(testing::max_abs_diff(shifted.narrow(1, k, full.size(1) - k), full.narrow(1, k, full.size(1) - k)),
            100 * bound);
}

}  // namespace test_mma_model
}  // namespace mmtune::train


namespace mmtune::train {
namespace test_mma_model {

TEST(MmaModel, LeftPaddedBatchedGenerationEqualsEachPromptAlone) {
  auto cfg = tiny_config();
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise_adapters(m, 29);
  m.model->eval();
  auto tok = text::load_tokenizer(std::string(testing::kTinyDir) + "/llama-gqa");
  // prompts of different lengths, left padded: rows 0 and 2 with images (4 slots after BOS + 2 tokens)
  torch::manual_seed(31);
  const std::vector<int64_t> lens{12, 7, 10};
  const int64_t B = 3, T = 12;
  model::MultimodalInput in;
  in.tokens = torch::zeros({B, T}, torch::kLong);
  in.attention_mask = torch::zeros({B, T}, torch::kBool);
  in.image_slots = torch::zeros({B, T}, torch::kBool);
  in.has_image = torch::tensor({1, 0, 1}, torch::kLong);
  in.images = torch::randn({B, 3, 32, 32});
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lens[b], start = T - n;
    in.tokens[b].narrow(0, start, n).copy_(torch::randint(3, 400, {n}));
    in.tokens[b][start] = 1;
    in.attention_mask[b].narrow(0, start, n).fill_(true);
    if (in.has_image[b].item<int64_t>()) {
      in.image_slots[b].narrow(0, start + 3, 4).fill_(true);
      in.tokens[b].narrow(0, start + 3, 4).fill_(0);
    }
  }
  runtime::SamplingOptions opt;
  opt.max_new_tokens = 8;
  opt.stop_at_eos = false;
  const auto together = runtime::generate(*m.model, *tok, in, opt);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lens[b], start = T - n;
    model::MultimodalInput one;
    one.tokens = in.tokens.narrow(0, b, 1).narrow(1, start, n);
    one.attention_mask = in.attention_mask.narrow(0, b, 1).narrow(1, start, n);
    one.image_slots = in.image_slots.narrow(0, b, 1).narrow(1, start, n);
    one.has_image = in.has_image.narrow(0, b, 1);
    one.images = in.images.narrow(0, b, 1);
    const auto alone = runtime::generate(*m.model, *tok, one, opt);
    EXPECT_EQ(alone[0].tokens, together[b].tokens) << "row " << b;
    EXPECT_EQ(alone[0].tokens.size(), 8u);
  }
  // a prompt longer than the context is a usage error
  opt.max_new_tokens = 600;
  EXPECT_THROW(runtime::generate(*m.model, *tok, in, opt), UsageError);
}

}  // namespace test_mma_model
}  // namespace mmtune::train
