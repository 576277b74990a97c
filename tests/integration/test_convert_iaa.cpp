// scripts/convert_iaa_checkpoint.py on a fake official IAA checkpoint (IAALlamaForCausalLM's names
// and shapes on the tiny models, sharded safetensors with an index, the text embedding and head
// resized by one row for <im_patch>; made by scripts/reference/make_iaa_checkpoint.py): the base
// directory loads as a plain LLaMA whose logits are the official Text workflow's, and each workflow
// adapter (mm, g) on that base gives the logits of the official forward (written from the released
// modeling_llama_iaa.py, reading the official names) on a mixed image / text batch. Bad input exits
// 1 with one line and writes nothing. Tolerances: tests/numerics.h (float64 to 1e-9; float32 within
// 4x the reference's own fp32-vs-fp64 difference).
#include <gtest/gtest.h>

#include <filesystem>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/lm_loss.h>

#include "fixtures.h"
#include "numerics.h"
#include "test_utils.h"

namespace mmtune::testing {
namespace test_convert_iaa {

namespace fs = std::filesystem;

constexpr int64_t kPatches = 16;  // tiny ViT: 32 px / patch 8 -> 4 x 4 patch tokens

std::string script(const std::string& rel) { return std::string(kSourceDir) + "/scripts/" + rel; }

ProcessResult python(std::vector<std::string> args) {
  args.insert(args.begin(), kPython);
  return run_process(args, {}, std::chrono::seconds(180));
}

class ConvertIaa : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    batch_ = new data::Batch(mixed_image_batch(kPatches));
    io::save_safetensors(path("batch.safetensors"), {{"tokens", batch_->tokens},
                                                     {"attention_mask", batch_->attention_mask.to(torch::kUInt8)},
                                                     {"image_slots", batch_->image_slots.to(torch::kUInt8)},
                                                     {"images", batch_->images},
                                                     {"has_image", batch_->has_image}});
    const auto r = python({script("reference/make_iaa_checkpoint.py"), "--llama", std::string(kTinyDir) + "/llama-gqa",
                           "--clip", std::string(kTinyDir) + "/clip-vit", "--batch", path("batch.safetensors"), "--out",
                           path("fakes"), "--insert-layers", "0,2"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }
  static void TearDownTestSuite() {
    delete batch_;
    delete dir_;
    batch_ = nullptr;
    dir_ = nullptr;
  }
  static std::string path(const std::string& rel) { return dir_->path() + "/" + rel; }

  static ProcessResult convert(const std::string& input, const std::string& dest, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{script("convert_iaa_checkpoint.py"), "--input", path("fakes/" + input), "--out", dest,
                                  "--image-size", "32"};
    args.insert(args.end(), extra.begin(), extra.end());
    return python(args);
  }

  // The tiny IAA model on the converted base with the converted workflow `wf`, in `dtype`.
  static runtime::BuiltModel load(const std::string& converted, const std::string& wf, const std::string& dtype) {
    const std::string adapter = converted + "/" + wf;
    std::vector<std::string> o{"model.path=" + converted + "/base", "vision.path=" + std::string(kTinyDir) + "/clip-vit",
                               "dtype=" + dtype};
    for (auto& s : runtime::adapter_overrides(adapter)) o.push_back(s);
    const auto cfg = config::load_config(std::string(kSourceDir) + "/configs/iaa/tiny.yaml", o, adapters::builtin_adapters());
    runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
    runtime::load_adapter(adapter, cfg, m);
    m.model->eval();
    return m;
  }

  static torch::Tensor logits(runtime::BuiltModel& m, bool fp64) {
    torch::NoGradGuard ng;
    data::Batch b = *batch_;
    if (fp64) b.images = b.images.to(torch::kFloat64);
    adapters::ForwardContext ctx;
    return m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
  }

  static inline TempDir* dir_ = nullptr;
  static inline data::Batch* batch_ = nullptr;
};

TEST_F(ConvertIaa, TheBaseIsTheTextWorkflowAndEachAdapterGivesItsWorkflowsLogits) {
  const std::string dest = path("converted");
  const auto r = convert("official", dest, {"--insert-layers", "0,2"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("kept the first 400 rows of model.embed_tokens and lm_head, dropped 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dropped 71 tensor(s) under model.vision_tower.*"), std::string::npos) << r.out;
  for (const char* f : {"base/config.json", "base/model.safetensors", "base/tokenizer.model", "mm/adapter_config.json",
                        "mm/adapter_model.safetensors", "g/adapter_config.json", "g/adapter_model.safetensors"})
    EXPECT_TRUE(fs::exists(dest + "/" + f)) << f;
  const std::string base_cfg = read_text(dest + "/base/config.json");
  EXPECT_NE(base_cfg.find("\"model_type\": \"llama\""), std::string::npos) << base_cfg;
  EXPECT_EQ(base_cfg.find("mm_vision_tower"), std::string::npos) << base_cfg;
  const auto ref = io::SafetensorsFile::open(path("fakes/ref.safetensors"));
  const torch::Tensor mask = batch_->attention_mask;

  // Text: the converted base as a plain LLaMA; the official model's head has one more row (<im_patch>)
  {
    torch::NoGradGuard ng;
    auto base = model::load_llama(dest + "/base", torch::kFloat32);
    auto base64 = model::load_llama(dest + "/base", torch::kFloat64);
    adapters::ForwardContext c1, c2;
    const torch::Tensor got = base->forward({batch_->tokens, {}, mask, {}}, nullptr, c1);
    const torch::Tensor got64 = base64->forward({batch_->tokens, {}, mask, {}}, nullptr, c2);
    ASSERT_EQ(got.size(-1), 400);
    expect_oracle_parity("converted IAA base = the official Text workflow", got, got64,
                         ref->tensor("logits_text").narrow(-1, 0, 400), ref->tensor("logits_text.fp64").narrow(-1, 0, 400),
                         mask);
  }
  // MM and G: each workflow adapter on the converted base
  for (const std::string wf : {"mm", "g"}) {
    runtime::BuiltModel m = load(dest, wf, "fp32");
    runtime::BuiltModel m64 = load(dest, wf, "fp64");
    const torch::Tensor got = logits(m, false), got64 = logits(m64, true);
    ASSERT_EQ(got.sizes(), ref->tensor("logits_" + wf).sizes()) << wf;
    expect_oracle_parity("converted IAA workflow " + wf, got, got64, ref->tensor("logits_" + wf),
                         ref->tensor("logits_" + wf + ".fp64"), mask);
  }
  // the three workflows really differ on these weights, so each comparison tells them apart
  EXPECT_GT(max_abs_diff(ref->tensor("logits_mm"), ref->tensor("logits_g"), mask), 0.1);
  EXPECT_GT(max_abs_diff(ref->tensor("logits_mm"), ref->tensor("logits_text").narrow(-1, 0, 400), mask), 0.1);
}

TEST_F(ConvertIaa, BadInputExitsOneWithOneLineAndWritesNothing) {
  struct Case {
    std::string input;
    std::vector<std::string> extra;
    std::string message;
  };
  const std::string tiny_llama = std::string(kTinyDir) + "/llama-gqa";
  for (const Case& c : {Case{"official", {}, "2 condition layers in a 3-layer model"},
                        Case{"official", {"--insert-layers", "0,3"}, "must be 2 distinct layers in 0..2"},
                        Case{"bad-unknown", {"--insert-layers", "0,2"}, "unknown tensors model.extra.weight"},
                        Case{"nope", {}, "not a directory"}}) {
    const std::string dest = path("bad-" + c.input + std::to_string(c.extra.size()));
    const auto r = convert(c.input, dest, c.extra);
    EXPECT_EQ(r.exit_code, 1) << c.input << r.err;
    EXPECT_NE(r.err.find("error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.input << ": " << r.err;
    EXPECT_FALSE(fs::exists(dest)) << c.input;
  }
  // a plain Llama directory is not an IAA checkpoint
  const auto r = python({script("convert_iaa_checkpoint.py"), "--input", tiny_llama, "--out", path("bad-llama")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not an IAA checkpoint: model_type is 'llama', expected 'IAA'"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("bad-llama")));
  // mmtune convert --help lists the converter
  const auto help = run_process({kMmtuneBin, "convert", "--help"});
  EXPECT_NE(help.out.find("scripts/convert_iaa_checkpoint.py"), std::string::npos) << help.out;
}

}  // namespace test_convert_iaa
}  // namespace mmtune::testing
