// A real model nobody here trained: llama2.c's stories260K (../shared/models/stories260K), converted
// with scripts/convert_llama2c.py, must reproduce llama2.c's published greedy output byte for byte,
// through the library and through `mmtune generate`.
// Token count: the published text is 200 generated tokens after BOS (llama2.c's run loop with
// steps=200 samples at every one of its 200 positions). The README's "BOS + 199" is one short:
// transformers' greedy generate on the converted model gives the same 200 tokens, and they are
// exactly SentencePiece's encoding of expected_greedy.txt; 199 tokens end at "so", not "so she".
#include <gtest/gtest.h>

#include <mmtune/runtime/generator.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/text/tokenizer.h>
#include <mmtune/model/weights.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "numerics.h"
#include "test_utils.h"

namespace mmtune::testing {
namespace test_stories260k {

class Stories260K : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    const std::string src = std::string(kSharedDir) + "/models/stories260K";
    const auto r = run_process({kPython, std::string(kSourceDir) + "/scripts/convert_llama2c.py", src + "/stories260K.bin",
                                "--tokenizer", src + "/tok512.model", "--out", model_dir()},
                               {}, std::chrono::seconds(120));
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    expected_ = read_text(src + "/expected_greedy.txt");
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string model_dir() { return dir_->path() + "/stories260K"; }
  static TempDir* dir_;
  static std::string expected_;
};
TempDir* Stories260K::dir_ = nullptr;
std::string Stories260K::expected_;

TEST_F(Stories260K, GreedyFromBosReproducesLlama2cFp32) {
  auto model = model::load_llama(model_dir(), torch::kFloat32);
  auto tok = text::load_tokenizer(model_dir());
  runtime::SamplingOptions opt;
  opt.max_new_tokens = 200;
  const auto out = runtime::generate(*model, *tok, {{tok->bos_id()}}, opt);
  EXPECT_EQ(out[0].tokens.size(), 200u) << out[0].finish_reason;
  EXPECT_EQ(out[0].text, expected_);
}

TEST_F(Stories260K, MmtuneGenerateReproducesLlama2c) {
  const auto r = run_process({kMmtuneBin, "generate", "--model", model_dir(), "--prompt", "", "--max-new-tokens", "200"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, expected_ + "\n");
}

TEST_F(Stories260K, StreamedTextEqualsTheFinalText) {
  auto model = model::load_llama(model_dir(), torch::kFloat32);
  auto tok = text::load_tokenizer(model_dir());
  runtime::SamplingOptions opt;
  opt.max_new_tokens = 60;
  opt.temperature = 0.8;
  opt.top_p = 0.9;
  opt.seed = 42;
  std::string streamed;
  const auto out = runtime::generate(*model, *tok, {tok->encode("Once upon a time", true, false)}, opt,
                                      [&](int64_t, const std::string& t) { streamed += t; });
  EXPECT_EQ(streamed, out[0].text);
  const auto again = runtime::generate(*model, *tok, {tok->encode("Once upon a time", true, false)}, opt);
  EXPECT_EQ(again[0].tokens, out[0].tokens) << "same seed, same sample";
}

TEST_F(Stories260K, PerplexityMatchesTransformersAndDumpsEveryLogprob) {
  TempDir d;
  const std::string text = std::string(kSharedDir) + "/models/stories260K/expected_greedy.txt";
  const auto ref = run_process({kPython, std::string(kSourceDir) + "/scripts/reference/perplexity_reference.py", "--model",
                                model_dir(), "--text", text});
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  const auto expected = nlohmann::json::parse(ref.out);
  const auto r = run_process({kMmtuneBin, "eval", "--task", "perplexity", "--model", model_dir(), "--text", text,
                              "--dump-logprobs", d.path() + "/lp.jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  int64_t tokens = 0;
  double mean_nll = 0, ppl = 0;
  std::istringstream out(r.out);
  std::string key;
  while (out >> key) {
    if (key == "tokens") out >> tokens;
    else if (key == "mean_nll") out >> mean_nll;
    else if (key == "perplexity") out >> ppl;
  }
  EXPECT_EQ(tokens, expected["tokens"].get<int64_t>());
  // the binary runs in float32; the bound is 4x the reference's fp32-vs-fp64 difference of the sum
  // (tests/numerics.h; the float64 algorithm check of the same forward is LlamaParity's)
  const double nll_sum = expected["nll_sum"].get<double>();
  const double bound = expect_oracle_parity("stories260K: summed NLL (mmtune eval)", mean_nll * tokens,
                                            std::nan(""), nll_sum, expected["nll_sum_fp64"].get<double>());
  // perplexity exp(nll / n): its relative error is the NLL's absolute error / n
  EXPECT_NEAR(ppl, expected["perplexity"].get<double>(), 2 * bound / tokens * expected["perplexity"].get<double>());
  std::istringstream lines(read_text(d.path() + "/lp.jsonl"));
  std::string line;
  int64_t n = 0;
  double sum = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["index"].get<int64_t>(), n + 1);
    sum -= j["logprob"].get<double>();
    ++n;
  }
  EXPECT_EQ(n, tokens);
  EXPECT_NEAR(sum, nll_sum, bound);
}

// Weight-only quantization keeps the model (issue 18): perplexity through `mmtune eval` of the
// published stories260K text (../shared), int8 within 1 % of fp32 and int4 (group 32) within 5 %.
// stories260K's MLP is 172 wide: int4 takes gate/up (172 outputs, padded for the kernel) and every
// attention projection; down_proj's 172 inputs are no multiple of 32, so it stays int8
// (--quant-fallback). (On a hand-written story of 130 tokens int4 measured +5.35 %, int8 +0.10 %;
// scripts/reference/quant_reference.py's weights give the same numbers in transformers.)
TEST_F(Stories260K, QuantizedPerplexityStaysNearFp32) {
  const std::string text = std::string(kSharedDir) + "/models/stories260K/expected_greedy.txt";
  auto ppl = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{kMmtuneBin, "eval", "--task", "perplexity", "--model", model_dir(), "--data", text};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = run_process(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::istringstream out(r.out);
    std::string key;
    double value = 0;
    while (out >> key) {
      if (key == "perplexity") out >> value;
    }
    return value;
  };
  const double fp32 = ppl({}), int8 = ppl({"--quantize", "int8"});
  const double int4 = ppl({"--quantize", "int4", "--quant-group", "32", "--quant-fallback", "int8"});
  std::printf("[quantize] stories260K perplexity: fp32 %.4f, int8 %.4f (%+.2f %%), int4 g32 %.4f (%+.2f %%)\n", fp32, int8,
              100 * (int8 / fp32 - 1), int4, 100 * (int4 / fp32 - 1));
  ASSERT_GT(fp32, 1.0);
  EXPECT_LE(std::abs(int8 / fp32 - 1), 0.01);
  EXPECT_LE(std::abs(int4 / fp32 - 1), 0.05);
  EXPECT_NE(int4, fp32) << "the int4 run must actually be quantized";
  // without the fallback, int4 refuses down_proj by name
  const auto r = run_process({kMmtuneBin, "eval", "--task", "perplexity", "--model", model_dir(), "--data", text,
                              "--quantize", "int4", "--quant-group", "32"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("model.layers.0.mlp.down_proj has 172 inputs"), std::string::npos) << r.err;
}

TEST_F(Stories260K, PromptLongerThanTheContextIsAUsageError) {
  const auto r = run_process({kMmtuneBin, "generate", "--model", model_dir(), "--prompt", "Once upon a time",
                              "--max-new-tokens", "600"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("exceeds the model's context of 512"), std::string::npos) << r.err;
}

TEST_F(Stories260K, BadCheckpointsExitOneWithANamedError) {
  TempDir d;
  // truncated weights
  std::filesystem::create_directories(d.path() + "/trunc");
  std::filesystem::copy_file(model_dir() + "/config.json", d.path() + "/trunc/config.json");
  std::filesystem::copy_file(model_dir() + "/tokenizer.model", d.path() + "/trunc/tokenizer.model");
  const std::string weights = read_text(model_dir() + "/model.safetensors");
  d.write("trunc/model.safetensors", weights.substr(0, weights.size() / 2));
  auto r = run_process({kMmtuneBin, "generate", "--model", d.path() + "/trunc", "--max-new-tokens", "4"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("model.safetensors"), std::string::npos) << r.err;
  // no weights at all, only a pickle
  std::filesystem::create_directories(d.path() + "/pickle");
  std::filesystem::copy_file(model_dir() + "/config.json", d.path() + "/pickle/config.json");
  std::filesystem::copy_file(model_dir() + "/tokenizer.model", d.path() + "/pickle/tokenizer.model");
  d.write("pickle/pytorch_model.bin", "not really a pickle");
  r = run_process({kMmtuneBin, "generate", "--model", d.path() + "/pickle", "--max-new-tokens", "4"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("convert"), std::string::npos) << r.err;
  // garbage header, a tensor of the wrong shape, a missing tensor: each named, each exit 1
  auto variant = [&](const std::string& name, const std::function<void(const std::string&)>& write) {
    std::filesystem::create_directories(d.path() + "/" + name);
    std::filesystem::copy_file(model_dir() + "/config.json", d.path() + "/" + name + "/config.json");
    std::filesystem::copy_file(model_dir() + "/tokenizer.model", d.path() + "/" + name + "/tokenizer.model");
    write(d.path() + "/" + name + "/model.safetensors");
    return run_process({kMmtuneBin, "generate", "--model", d.path() + "/" + name, "--max-new-tokens", "4"});
  };
  r = variant("garbage", [&](const std::string& p) { d.write(p.substr(d.path().size() + 1), std::string("\x10\0\0\0\0\0\0\0{not json at all", 24)); });
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bad-header-json"), std::string::npos) << r.err;
  const auto ckpt = io::SafetensorsCheckpoint::open(model_dir());
  auto rewrite = [&](const std::string& p, const std::string& drop, const std::string& shrink) {
    std::vector<std::pair<std::string, torch::Tensor>> ts;
    for (const auto& n : ckpt.names()) {
      if (n == drop) continue;
      ts.emplace_back(n, n == shrink ? ckpt.tensor(n).narrow(0, 0, 2).clone() : ckpt.tensor(n).clone());
    }
    io::save_safetensors(p, ts);
  };
  r = variant("shape", [&](const std::string& p) { rewrite(p, "", "model.layers.0.mlp.up_proj.weight"); });
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("wrong shape or dtype 1 [model.layers.0.mlp.up_proj.weight is [2, 64]"), std::string::npos) << r.err;
  r = variant("missing", [&](const std::string& p) { rewrite(p, "model.norm.weight", ""); });
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing 1 [model.norm.weight]"), std::string::npos) << r.err;
}

}  // namespace test_stories260k
}  // namespace mmtune::testing
