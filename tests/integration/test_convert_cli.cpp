// `mmtune convert` end to end through the binary (issue 9): a LoRA adapter trained by `mmtune train`
// merges into a Hugging Face LLaMA directory with the unmerged logits, exports to PEFT's layout
// (which the Python peft library loads with the same logits) and imports back bitwise; MoLE
// checkpoints, PEFT directories given to --merge / --to-peft and conflicting flags are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>

#include "numerics.h"
#include "test_utils.h"

namespace mmtune::testing {
namespace test_convert_cli {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string source(const std::string& rel) { return std::string(kSourceDir) + "/" + rel; }
std::string tiny(const std::string& name) { return std::string(kTinyDir) + "/" + name; }

ProcessResult mmtune(std::vector<std::string> args) {
  args.insert(args.begin(), kMmtuneBin);
  return run_process(args, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(240));
}

// One LoRA and one MoLE run of a few steps on a small conflicting-formats set, shared by the suite.
class ConvertCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto r = run_process({kPython, source("scripts/make_conflicting_formats.py"), "--out", path("data"), "--train", "16",
                          "--test", "4"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // lr 0.01 for 4 steps: B clearly non-zero (the logits move by more than 1e-3), so merging and
    // exporting really carry the adapter, at trained-LoRA magnitudes (B A a few per cent of W)
    r = mmtune({"train", "--config", source("configs/lora/tiny.yaml"), "model.path=" + tiny("llama-gqa"),
                "data.json=" + path("data/train.json"), "output_dir=" + path("lora"), "train.max_steps=4",
                "train.lr=0.01", "train.micro_batch_size=4", "train.global_batch_size=4"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = mmtune({"train", "--config", source("configs/mole/tiny.yaml"), "model.path=" + tiny("llama-gqa"),
                "vision.path=" + tiny("clip-vit"), "data.json=" + path("data/train.json"), "output_dir=" + path("mole"),
                "train.max_steps=1", "train.micro_batch_size=4", "train.global_batch_size=4"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static std::string path(const std::string& rel) { return dir_->path() + "/" + rel; }
  static std::string lora_ckpt() { return path("lora/checkpoint-4"); }

  static ProcessResult convert(const std::string& checkpoint, const std::string& mode, const std::string& out) {
    return mmtune({"convert", "--config", source("configs/lora/tiny.yaml"), "model.path=" + tiny("llama-gqa"),
                   "--checkpoint", checkpoint, mode, "--out", out});
  }

  // The base with `adapter` (an mmtune adapter directory) loaded, as the CLI builds it.
  static runtime::BuiltModel with_adapter(const std::string& adapter, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> o{"model.path=" + tiny("llama-gqa")};
    for (auto& s : runtime::adapter_overrides(adapter)) o.push_back(s);
    o.insert(o.end(), extra.begin(), extra.end());
    const auto cfg = config::load_config(source("configs/lora/tiny.yaml"), o, adapters::builtin_adapters());
    runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
    runtime::load_adapter(adapter, cfg, m);
    m.model->eval();
    return m;
  }

  static torch::Tensor logits(model::LlamaDecoderImpl& m, const torch::Tensor& ids, const torch::Tensor& mask) {
    adapters::ForwardContext ctx;
    torch::NoGradGuard ng;
    return m.forward({ids, {}, mask, {}}, nullptr, ctx);
  }

  static inline TempDir* dir_ = nullptr;
};

TEST_F(ConvertCli, MergeWritesAHuggingFaceModelWithTheUnmergedLogits) {
  const std::string out = path("merged");
  const auto r = convert(lora_ckpt(), "--merge", out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("merged 21 LoRA projections"), std::string::npos) << r.err;  // 3 layers x 7
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.model"}) EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  torch::manual_seed(3);
  const torch::Tensor ids = torch::randint(3, 400, {2, 14});
  const torch::Tensor mask = torch::ones({2, 14}, torch::kBool);
  runtime::BuiltModel m = with_adapter(lora_ckpt());
  const torch::Tensor unmerged = logits(m.model->llm(), ids, mask);
  auto merged = model::load_llama(out, torch::kFloat32);
  const torch::Tensor got = logits(*merged, ids, mask);
  // W + (alpha / r) B A is rounded to fp32 once per weight, one more fp32 rounding of the kind the
  // forward makes everywhere: the bound is 4x the fp32-vs-fp64 noise of the unmerged forward on
  // these inputs (tests/numerics.h); the unit test LoraPeft.MergedEqualsUnmerged... checks the
  // merge itself in float64 to 1e-12.
  runtime::BuiltModel m64 = with_adapter(lora_ckpt(), {"dtype=fp64"});
  const torch::Tensor unmerged64 = logits(m64.model->llm(), ids, mask);
  const double range = max_abs(unmerged64);
  const double bound = fp32_bound(max_abs_diff(unmerged, unmerged64), range);
  const double diff = max_abs_diff(got, unmerged);
  std::printf("[numerics] merged (fp32 file) vs unmerged logits: %.3g, bound %.3g (|logits| up to %.3g)\n", diff, bound,
              range);
  EXPECT_LE(diff, bound) << "max |logit| " << range;
  // and the adapter matters: the base alone differs
  auto base = model::load_llama(tiny("llama-gqa"), torch::kFloat32);
  EXPECT_GT((logits(*base, ids, mask) - unmerged).abs().max().item<double>(), 1e-3);
}

TEST_F(ConvertCli, ToPeftLoadsInPeftWithTheSameLogitsAndFromPeftRoundTripsBitwise) {
  const std::string peft = path("peft"), back = path("back");
  auto r = convert(lora_ckpt(), "--to-peft", peft);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json cfg = json::parse(read_text(peft + "/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_DOUBLE_EQ(cfg["lora_alpha"].get<double>(), 8.0);
  EXPECT_EQ(cfg["target_modules"].size(), 7u);
  // every tensor under its PEFT name with the trained value
  const auto mine = io::SafetensorsFile::open(lora_ckpt() + "/adapter_model.safetensors");
  const auto theirs = io::SafetensorsFile::open(peft + "/adapter_model.safetensors");
  EXPECT_EQ(theirs->names().size(), mine->names().size());
  EXPECT_TRUE(torch::equal(theirs->tensor("base_model.model.model.layers.2.mlp.down_proj.lora_B.weight"),
                           mine->tensor("llm.model.layers.2.adapters.lora.down.lora_B")));
  // the peft library loads it (every tensor used) and computes the logits mmtune computes
  fs::create_directories(path("peft-ref"));
  r = run_process({kPython, source("scripts/reference/peft_reference.py"), "load", "--model", tiny("llama-gqa"), "--adapter",
                   peft, "--out", path("peft-ref")},
                  {}, std::chrono::seconds(180));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const auto ref = io::SafetensorsFile::open(path("peft-ref/ref.safetensors"));
  const torch::Tensor mask = ref->tensor("attention_mask").clone();
  runtime::BuiltModel m = with_adapter(lora_ckpt());
  const torch::Tensor ids = ref->tensor("input_ids").clone();
  const torch::Tensor got = logits(m.model->llm(), ids, mask);
  runtime::BuiltModel m64 = with_adapter(lora_ckpt(), {"dtype=fp64"});  // the base and the LoRA masters
  expect_oracle_parity("converted to PEFT: logits vs peft", got, logits(m64.model->llm(), ids, mask),
                       ref->tensor("logits"), ref->tensor("logits.fp64"), mask);
  // and back into mmtune's layout: the same tensors, bitwise
  r = convert(peft, "--from-peft", back);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto again = io::SafetensorsFile::open(back + "/adapter_model.safetensors");
  ASSERT_EQ(again->names(), mine->names());
  for (const auto& n : mine->names()) EXPECT_TRUE(torch::equal(again->tensor(n), mine->tensor(n))) << n;
  const json back_cfg = json::parse(read_text(back + "/adapter_config.json"));
  EXPECT_EQ(back_cfg["family"], "lora");
  EXPECT_EQ(back_cfg["adapter"]["lora"]["rank"], 4);
}

TEST_F(ConvertCli, RefusesMoleCheckpointsPeftDirectoriesAndConflictingModes) {
  auto r = convert(path("mole/checkpoint-1"), "--merge", path("x1"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("holds a 'mole' adapter; --merge converts lora adapters only"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("x1")));
  r = convert(path("mole/checkpoint-1"), "--to-peft", path("x2"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--to-peft converts lora adapters only"), std::string::npos) << r.err;
  // a PEFT directory needs --from-peft first
  ASSERT_EQ(convert(lora_ckpt(), "--to-peft", path("peft2")).exit_code, 0);
  r = convert(path("peft2"), "--merge", path("x3"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("is a PEFT adapter"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--from-peft"), std::string::npos) << r.err;
  // --from-peft on an mmtune adapter, and two modes at once
  r = convert(lora_ckpt(), "--from-peft", path("x4"));
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(path("x4/adapter_model.safetensors")));
  r = mmtune({"convert", "--config", source("configs/lora/tiny.yaml"), "--checkpoint", lora_ckpt(), "--merge", "--to-peft",
              "--out", path("x5")});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("excludes"), std::string::npos) << r.err;
}

}  // namespace test_convert_cli
}  // namespace mmtune::testing

namespace mmtune::testing {
namespace test_convert_cli {

// `mmtune convert quantize` (issue 18): a pre-quantized directory holds exactly the codes that
// quantizing on load gives (so generation is token-identical), loads only as written, and bad
// requests write nothing.
TEST(ConvertQuantize, APreQuantizedDirectoryGeneratesLikeQuantizingOnLoad) {
  TempDir d;
  const std::string out = d.path() + "/int4";
  auto r = mmtune({"convert", "quantize", "--in", tiny("llama3-rope"), "--out", out, "--bits", "4", "--group", "32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json cfg = json::parse(read_text(out + "/config.json"));
  EXPECT_EQ(cfg["quantization"]["bits"], 4);
  EXPECT_EQ(cfg["quantization"]["group_size"], 32);
  const auto file = io::SafetensorsFile::open(out + "/model.safetensors");
  EXPECT_EQ(file->info("model.layers.0.mlp.down_proj.qweight").dtype, torch::kUInt8);
  EXPECT_EQ(file->info("model.layers.0.mlp.down_proj.scales").dtype, torch::kBFloat16);
  EXPECT_EQ(file->info("model.embed_tokens.weight").dtype, torch::kFloat32) << "the embedding is copied as it was";
  EXPECT_TRUE(fs::exists(out + "/tokenizer.model"));
  EXPECT_FALSE(file->contains("model.layers.0.mlp.down_proj.weight"));

  const std::vector<std::string> gen{"generate", "--prompt", "The answer is", "--max-new-tokens", "12", "--ignore-eos"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = gen;
    args.insert(args.end(), extra.begin(), extra.end());
    return mmtune(args);
  };
  const auto on_load = with({"--model", tiny("llama3-rope"), "--quantize", "int4", "--quant-group", "32"});
  const auto pre = with({"--model", out});
  ASSERT_EQ(on_load.exit_code, 0) << on_load.err;
  ASSERT_EQ(pre.exit_code, 0) << pre.err;
  EXPECT_EQ(pre.out, on_load.out);
  EXPECT_EQ(with({"--model", out, "--quantize", "int4", "--quant-group", "32"}).out, pre.out) << "the same request is fine";

  // asked for other bits or another group: refused, naming the directory and the settings to use
  for (const std::vector<std::string>& other : {std::vector<std::string>{"--quantize", "int8"},
                                                std::vector<std::string>{"--quantize", "int4", "--quant-group", "64"}}) {
    std::vector<std::string> args{"--model", out};
    args.insert(args.end(), other.begin(), other.end());
    r = with(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(out + " holds int4 (group 32) weights"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("model.quant_group=32"), std::string::npos) << r.err;
  }
}

TEST(ConvertQuantize, BadRequestsWriteNothing) {
  TempDir d;
  // group 64 does not divide llama-gqa's 176-wide down_proj inputs
  const std::string out = d.path() + "/q";
  auto r = mmtune({"convert", "quantize", "--in", tiny("llama-gqa"), "--out", out, "--bits", "4", "--group", "64"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("model.layers.0.mlp.down_proj has 176 inputs"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(fs::is_empty(d.path())) << "no temporary directory left behind";
  // with the int8 fallback it works, and says how many weights fell back
  r = mmtune({"convert", "quantize", "--in", tiny("llama-gqa"), "--out", out, "--bits", "4", "--group", "64",
              "--fallback", "int8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("3 in int8 (fallback)"), std::string::npos) << r.err;
  // an existing output, an already quantized input
  r = mmtune({"convert", "quantize", "--in", tiny("llama-gqa"), "--out", out, "--bits", "8"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  r = mmtune({"convert", "quantize", "--in", out, "--out", d.path() + "/again", "--bits", "8"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is already quantized"), std::string::npos) << r.err;
}

}  // namespace test_convert_cli
}  // namespace mmtune::testing
