// Issue 5 acceptance (e): mmtune's MMA (LaVIN) model against scripts/reference/mma_reference.py,
// which runs transformers' own LlamaForCausalLM and CLIPVisionModel with LaVIN's MM-adapters,
// neck, modality token and mask added by hooks. Both sides get the same non-zero adapter weights
// (C++ draws them, runtime::save_adapter writes them, the reference reads adapter_model.safetensors) and
// the same mixed batch (two image rows, one shorter text-only row with its zero image, laid out by
// data::encode_sample with the tiny tokenizer). Logits are compared on every real position.
// Then the converter path: an official-format LaVIN .pth (scripts/reference/make_lavin_checkpoint.py)
// -> scripts/convert_lavin_checkpoint.py -> runtime::adapter_overrides + runtime::load_adapter into a runtime::build_model'd
// tiny model -> the same logits as the reference run with the checkpoint's tensors and LaVIN's options.
//
// Tolerance (tests/numerics.h): mma_reference.py writes every output in float32 and float64 (same
// models, adapter file and batch). mmtune's float64 model (dtype: fp64, the adapters' master
// weights cast to float64) must match the float64 reference to 1e-9; mmtune in float32 must match
// the float32 reference within 4x the reference's own fp32-vs-fp64 difference on these inputs.
// Measured on an AMD EPYC (AVX-512 bf16): reference noise 2-6e-5 on logits up to ~11, mmtune
// fp32 within ~1-2x of it, fp64 ~1e-14. The reference uses transformers' default attention
// (SDPA; eager keeps its softmax in fp32 even in a float64 model) and, under per_sample_cls, runs
// the ViT on the image rows only (an image's features depend on it alone), as mmtune does.
// The test is sensitive well past the bound: changing only the router temperature from 10 to 9.9
// moves the reference's logits by 9e-2, and switching the CLIP routing mode by 2.2.
// Each case prints "[numerics] ..." lines (logits, CLIP features, visual tokens).
#include <gtest/gtest.h>

#include <mmtune/adapters/mma.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/data/collate.h>
#include <mmtune/runtime/generator.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/text/tokenizer.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>

#include <algorithm>
#include <cstdio>

#include "numerics.h"
#include "test_utils.h"

namespace mmtune::train {
namespace test_mma_parity {

std::string tiny(const std::string& name) { return std::string(testing::kTinyDir) + "/" + name; }
std::string script(const std::string& rel) { return std::string(testing::kSourceDir) + "/scripts/" + rel; }

testing::ProcessResult python(std::vector<std::string> args) {
  args.insert(args.begin(), testing::kPython);
  return testing::run_process(args, {}, std::chrono::seconds(120));
}

config::RunConfig tiny_config(std::vector<std::string> extra = {}) {
  std::vector<std::string> o{"model.path=" + tiny("llama-gqa"), "vision.path=" + tiny("clip-vit"),
                             "adapter.mma.dropout=0.0"};
  o.insert(o.end(), extra.begin(), extra.end());
  return config::load_config(std::string(testing::kSourceDir) + "/configs/lavin/tiny.yaml", o,
                             adapters::builtin_adapters());
}

// Two image rows and a shorter text-only row (right padding), in the layout the model's family
// asks for ("Image: " + slots / "Image: N/A"); images ~ N(0, 1), the text-only row's zero.
model::MultimodalInput mixed_batch(const config::RunConfig& cfg, const runtime::BuiltModel& m,
                                   const std::string& answer = " The answer is A.") {
  const auto tok = text::load_tokenizer(tiny("llama-gqa"));
  const data::SequenceLayout layout = runtime::sequence_layout(cfg, m);
  const std::vector<std::pair<std::string, bool>> rows{{"Question: which colour is the square?\nResponse:", true},
                                                       {"Context: N/A\nResponse:", false},
                                                       {"Options: (A) red (B) blue\nResponse:", true}};
  std::vector<data::EncodedSample> enc;
  int64_t T = 0;
  for (const auto& [prompt, image] : rows) {
    data::Example ex;
    ex.prompt = prompt;
    ex.answer = answer;  // empty: a generation prompt
    if (image) ex.image_path = "unused.png";  // only makes it an image sample; nothing is read
    enc.push_back(data::encode_sample(ex, *tok, layout, 256));
    T = std::max<int64_t>(T, static_cast<int64_t>(enc.back().tokens.size()));
  }
  const auto B = static_cast<int64_t>(rows.size());
  model::MultimodalInput in;
  in.tokens = torch::full({B, T}, tok->pad_id(), torch::kLong);
  in.attention_mask = torch::zeros({B, T}, torch::kBool);
  in.image_slots = torch::zeros({B, T}, torch::kBool);
  in.has_image = torch::zeros({B}, torch::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const auto& e = enc[b];
    const auto len = static_cast<int64_t>(e.tokens.size());
    in.tokens[b].narrow(0, 0, len).copy_(torch::tensor(e.tokens, torch::kLong));
    in.attention_mask[b].narrow(0, 0, len).fill_(true);
    in.image_slots[b].narrow(0, 0, len).copy_(torch::tensor(std::vector<int64_t>(e.slots.begin(), e.slots.end())).to(torch::kBool));
    in.has_image[b] = rows[b].second ? 1 : 0;
  }
  torch::manual_seed(5);
  const int64_t S = cfg.vision.image_size;
  in.images = torch::randn({B, 3, S, S}) * in.has_image.to(torch::kFloat).view({B, 1, 1, 1});
  return in;
}

// The batch in mma_reference.py's layout (data::Batch fields; masks as uint8).
void save_batch(const std::string& path, const model::MultimodalInput& in) {
  io::save_safetensors(path, {{"tokens", in.tokens},
                              {"attention_mask", in.attention_mask.to(torch::kUInt8)},
                              {"image_slots", in.image_slots.to(torch::kUInt8)},
                              {"images", in.images},
                              {"has_image", in.has_image}});
}

// Non-zero adapter weights as mma_reference.py's make_adapter draws them: routers large enough
// that routing matters, the modality rows ~ N(0, 1).
void randomise_adapters(runtime::BuiltModel& m, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& [name, t] : m.trainable) {
    const double s = name.find("modality") != std::string::npos         ? 1.0
                     : name.find("expert_weights") != std::string::npos ? 0.5
                                                                        : 0.2;
    t.copy_(torch::randn_like(t) * s);
  }
}

// The reference's flags for the options of `cfg` (the C++ side's own configuration).
std::vector<std::string> reference_flags(const config::RunConfig& cfg) {
  const auto& o = cfg.adapter.selected<adapters::MmaConfig>();
  return {"--temperature", std::to_string(o.temperature), "--scale", std::to_string(o.scale),
          "--cls-every", std::to_string(cfg.vision.cls_every), "--llm-placement", o.llm_placement,
          "--vision-placement", o.vision_placement, "--clip-router-mode", o.clip_router_mode};
}

struct Outputs {
  torch::Tensor logits, clip_features, visual_tokens;
};

Outputs run_model(runtime::BuiltModel& m, const model::MultimodalInput& in) {
  torch::NoGradGuard ng;
  m.model->eval();
  adapters::ForwardContext ctx;
  Outputs o;
  o.logits = m.model->forward(in, nullptr, ctx);
  adapters::ForwardContext vctx;
  o.clip_features = m.model->visual_features(in.images, vctx);
  o.visual_tokens = m.model->llm().active_decoder_adapter()->project_visual(o.clip_features, vctx);
  return o;
}

model::MultimodalInput to_fp64(model::MultimodalInput in) {
  in.images = in.images.to(torch::kFloat64);
  return in;
}

// Runs the reference on (adapter file, batch) in both precisions and compares with the C++ model
// run in float32 and with its float64 twin (tests/numerics.h):
// logits on the real positions, CLIP features and visual tokens.
void expect_parity(const std::string& label, const config::RunConfig& cfg, runtime::BuiltModel& m,
                   const model::MultimodalInput& in, const std::string& adapter_file,
                   const std::vector<std::string>& flags, const std::string& dir) {
  const std::string batch = dir + "/batch.safetensors", out = dir + "/reference.safetensors";
  save_batch(batch, in);
  std::vector<std::string> args{script("reference/mma_reference.py"), "--llama", tiny("llama-gqa"), "--clip",
                                tiny("clip-vit"), "--adapter", adapter_file, "--batch", batch, "--out", out};
  args.insert(args.end(), flags.begin(), flags.end());
  const auto r = python(args);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto ref = io::SafetensorsFile::open(out);

  const Outputs o32 = run_model(m, in);
  runtime::BuiltModel m64 = testing::fp64_twin(cfg, m);  // frozen weights in float64, the adapters cast
  const Outputs o64 = run_model(m64, to_fp64(in));
  ASSERT_EQ(o32.logits.sizes(), ref->tensor("logits").sizes()) << label;
  testing::expect_oracle_parity(label + ": logits", o32.logits, o64.logits, ref->tensor("logits"),
                                ref->tensor("logits.fp64"), in.attention_mask);
  testing::expect_oracle_parity(label + ": CLIP features", o32.clip_features, o64.clip_features,
                                ref->tensor("clip_features"), ref->tensor("clip_features.fp64"));
  testing::expect_oracle_parity(label + ": visual tokens", o32.visual_tokens, o64.visual_tokens,
                                ref->tensor("visual_tokens"), ref->tensor("visual_tokens.fp64"));
  // the adapters are not a no-op here (otherwise the comparison would prove little)
  EXPECT_GT(testing::max_abs(ref->tensor("logits"), in.attention_mask), 1.0) << label;
}

// One configuration: C++ draws the adapter, writes it with runtime::save_adapter, both sides run it in
// float32 and float64. mmtune's float64 path is dtype: fp64 with the adapters' master weights cast
// (testing::fp64_twin; MMA computes in its master weights' dtype); transformers keeps RMSNorm and
// the RoPE angles in fp32 even in a float64 model, and so does mmtune.
void run_case(const std::string& label, const std::vector<std::string>& overrides, uint64_t seed) {
  const auto cfg = tiny_config(overrides);
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise_adapters(m, seed);
  const model::MultimodalInput in = mixed_batch(cfg, m);
  testing::TempDir dir;
  runtime::save_adapter(dir.path() + "/adapter", cfg, m);
  // the file holds exactly what the reference reads: it refuses unknown names and missing groups
  expect_parity(label, cfg, m, in, dir.path() + "/adapter/" + runtime::kAdapterWeightsFile, reference_flags(cfg), dir.path());
}

TEST(MmaParity, PerSampleRoutingAttnPlacementMatchesTheTransformersReference) {
  run_case("per_sample_cls, llm attn, vision router", {}, 41);
}

TEST(MmaParity, PerSampleRoutingBlockPlacementMatchesTheTransformersReference) {
  run_case("per_sample_cls, llm block, vision router_block",
           {"adapter.mma.llm_placement=block", "adapter.mma.vision_placement=router_block"}, 42);
}

TEST(MmaParity, LavinClipQuirkAttnPlacementMatchesTheTransformersReference) {
  // rows 1 and 2 take sample 0's per-position CLIP routing (spec §1.3); temperature 5 as LaVIN-13B
  run_case("official_lnd_quirk, llm attn, vision router, t=5",
           {"adapter.mma.clip_router_mode=official_lnd_quirk", "adapter.mma.temperature=5"}, 43);
}

TEST(MmaParity, LavinClipQuirkBlockPlacementMatchesTheTransformersReference) {
  run_case("official_lnd_quirk, llm block, vision router_block",
           {"adapter.mma.clip_router_mode=official_lnd_quirk", "adapter.mma.llm_placement=block",
            "adapter.mma.vision_placement=router_block"}, 44);
}

TEST(MmaParity, NoVisionAdaptersTwoVisualTokensScaleHalfMatchesTheTransformersReference) {
  // a frozen ViT (vision_placement none), CLS after every 2nd block (2 visual tokens), s = 0.5
  run_case("per_sample_cls, llm block, vision none, cls_every 2, s=0.5",
           {"adapter.mma.llm_placement=block", "adapter.mma.vision_placement=none", "vision.cls_every=2",
            "adapter.mma.scale=0.5"}, 45);
}

// Official LaVIN checkpoint -> converter -> C++ runtime::load_adapter vs the reference on the checkpoint's
// own tensors (expected.safetensors: the .pth's tensors under mmtune's names, written by
// make_lavin_checkpoint.py independently of the converter) with LaVIN's options spelled out here,
// not read from the converted config, so the converter's options are checked too.
void converted_case(const std::string& label, const std::vector<std::string>& make_flags,
                    const std::vector<std::string>& convert_flags, const std::vector<std::string>& lavin_options) {
  testing::TempDir dir;
  const std::string lv = dir.path() + "/lv", conv = dir.path() + "/converted";
  std::vector<std::string> make{script("reference/make_lavin_checkpoint.py"), "--llama", tiny("llama-gqa"), "--clip",
                                tiny("clip-vit"), "--out", lv, "--seed", "3"};
  make.insert(make.end(), make_flags.begin(), make_flags.end());
  auto r = python(make);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<std::string> convert{script("convert_lavin_checkpoint.py"), "--input", lv + "/checkpoint-19.pth",
                                   "--out", conv, "--cls-every", "1", "--image-size", "32"};
  convert.insert(convert.end(), convert_flags.begin(), convert_flags.end());
  r = python(convert);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const auto cfg = tiny_config(runtime::adapter_overrides(conv));
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  runtime::load_adapter(conv, cfg, m);
  const model::MultimodalInput in = mixed_batch(cfg, m);
  expect_parity(label, cfg, m, in, lv + "/expected.safetensors", lavin_options, dir.path());
}

TEST(MmaConvertedCheckpoint, OfficialAttnCheckpointLoadsAndMatchesTheReference) {
  // LaVIN's own behaviour: args.temperature 5 from the pickled Namespace, CLIP quirk routing
  converted_case("converted official (attn, router), official_lnd_quirk, t=5", {}, {},
                 {"--temperature", "5", "--scale", "1", "--cls-every", "1", "--llm-placement", "attn",
                  "--vision-placement", "router", "--clip-router-mode", "official_lnd_quirk"});
}

TEST(MmaConvertedCheckpoint, OfficialBlockCheckpointCleanLoadsAndMatchesTheReference) {
  // block placements detected from the tensors; --clean: per-sample CLIP routing
  converted_case("converted official (block, router_block) --clean, per_sample_cls, t=5",
                 {"--llm-placement", "block", "--vision-placement", "router_block"}, {"--clean"},
                 {"--temperature", "5", "--scale", "1", "--cls-every", "1", "--llm-placement", "block",
                  "--vision-placement", "router_block", "--clip-router-mode", "per_sample_cls"});
}

// The batch with each row's real tokens moved to the right end (what generate() takes).
model::MultimodalInput left_padded(model::MultimodalInput in) {
  const int64_t B = in.tokens.size(0), T = in.tokens.size(1);
  model::MultimodalInput out = in;
  out.tokens = torch::zeros_like(in.tokens);
  out.attention_mask = torch::zeros_like(in.attention_mask);
  out.image_slots = torch::zeros_like(in.image_slots);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = in.attention_mask[b].sum().item<int64_t>();
    out.tokens[b].narrow(0, T - n, n).copy_(in.tokens[b].narrow(0, 0, n));
    out.attention_mask[b].narrow(0, T - n, n).fill_(true);
    out.image_slots[b].narrow(0, T - n, n).copy_(in.image_slots[b].narrow(0, 0, n));
  }
  return out;
}

// eval.generation.compat: lavin against lavin_generate in mma_reference.py, a re-implementation of
// LaVIN's official batched loop (lavin/generator.py) written without a KV cache: on a batch whose
// prompts differ in length, decoding starts at the shortest prompt, the longer rows' remaining
// prompt tokens go through one-token steps, and with rope_decode_offset 0 every token fed after
// the prefill sits one RoPE position early. The greedy tokens must be the same in float64 (where an
// argmax is decided by gaps far above rounding) and, where the gaps allow it, in float32.
TEST(MmaLavinCompat, OfficialBatchedLoopMatchesThePythonReimplementationOnAMixedLengthBatch) {
  const auto cfg = tiny_config({"adapter.mma.rope_decode_offset=0"});
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise_adapters(m, 44);
  const model::MultimodalInput in = mixed_batch(cfg, m, "");  // generation prompts, right-padded
  std::vector<int64_t> len;
  for (int64_t b = 0; b < in.tokens.size(0); ++b) len.push_back(in.attention_mask[b].sum().item<int64_t>());
  ASSERT_LT(*std::min_element(len.begin(), len.end()), *std::max_element(len.begin(), len.end()));
  testing::TempDir dir;
  runtime::save_adapter(dir.path() + "/adapter", cfg, m);
  save_batch(dir.path() + "/batch.safetensors", in);
  constexpr int64_t kNew = 6;
  std::vector<std::string> args{script("reference/mma_reference.py"), "--llama", tiny("llama-gqa"), "--clip",
                                tiny("clip-vit"), "--adapter", dir.path() + "/adapter/" + runtime::kAdapterWeightsFile,
                                "--batch", dir.path() + "/batch.safetensors", "--out", dir.path() + "/gen.safetensors",
                                "--generate-lavin", std::to_string(kNew)};
  for (const auto& f : reference_flags(cfg)) args.push_back(f);
  const auto r = python(args);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto ref = io::SafetensorsFile::open(dir.path() + "/gen.safetensors");
  const double gap = ref->tensor("gap").item<double>();
  EXPECT_GT(gap, 1e-9) << "a float64 argmax tie: the comparison would be meaningless";

  const auto tok = text::load_tokenizer(tiny("llama-gqa"));
  runtime::SamplingOptions opt;
  opt.max_new_tokens = kNew;
  opt.compat = "lavin";
  // LaVIN's output: the tokens after the row's prompt, cut at EOS
  auto expected = [&](const torch::Tensor& tokens, int64_t b) {
    std::vector<int64_t> want;
    for (int64_t t = len[b]; t < len[b] + kNew; ++t) {
      const int64_t id = tokens[b][t].item<int64_t>();
      if (id == tok->eos_id()) break;
      want.push_back(id);
    }
    return want;
  };
  m.model->eval();
  runtime::BuiltModel m64 = testing::fp64_twin(cfg, m);
  m64.model->eval();
  const auto got64 = runtime::generate(*m64.model, *tok, left_padded(to_fp64(in)), opt);
  const auto got32 = runtime::generate(*m.model, *tok, left_padded(in), opt);
  for (size_t b = 0; b < len.size(); ++b) {
    EXPECT_EQ(got64[b].tokens, expected(ref->tensor("tokens"), b)) << "row " << b << " (prompt " << len[b] << " tokens)";
    // float32 noise is ~1e-5 on these logits (MmaParity): a gap 100x that cannot flip an argmax
    if (gap > 1e-3) {
      EXPECT_EQ(got32[b].tokens, expected(ref->tensor("tokens_fp32"), b)) << "row " << b << " fp32";
    }
  }
  std::printf("[numerics] LaVIN compat loop: prompts %ld..%ld tokens, smallest float64 top-2 gap %.3g\n",
              static_cast<long>(*std::min_element(len.begin(), len.end())),
              static_cast<long>(*std::max_element(len.begin(), len.end())), gap);
}

}  // namespace test_mma_parity
}  // namespace mmtune::train
