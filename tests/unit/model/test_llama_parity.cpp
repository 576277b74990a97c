// The frozen LLaMA decoder against transformers' LlamaForCausalLM (scripts/reference/llama_reference.py)
// on the three tiny shapes: MHA + tied embeddings, GQA, llama3 rope scaling. Tolerances: the
// reference runs in float32 and float64; mmtune in float64 matches it to 1e-9, in float32 within
// 4x the reference's own fp32-vs-fp64 difference (tests/numerics.h).
#include <gtest/gtest.h>

#include <mmtune/runtime/generator.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/text/tokenizer.h>
#include <mmtune/model/weights.h>

#include <cstdio>
#include <filesystem>

#include "numerics.h"
#include "test_utils.h"

namespace mmtune::model {
namespace test_llama_parity {

using mmtune::testing::TempDir;

struct Reference {
  std::shared_ptr<const io::SafetensorsFile> file;
  torch::Tensor get(const std::string& name) const { return file->tensor(name).clone(); }
};

Reference run_reference(const std::string& model_dir, const TempDir& d) {
  const std::string out = d.path() + "/ref.safetensors";
  const auto r = testing::run_process({testing::kPython, std::string(testing::kSourceDir) + "/scripts/reference/llama_reference.py",
                                       "--model", model_dir, "--out", out},
                                      {}, std::chrono::seconds(120));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return {io::SafetensorsFile::open(out)};
}

class LlamaParity : public ::testing::TestWithParam<std::string> {
 protected:
  std::string dir() const { return std::string(testing::kTinyDir) + "/" + GetParam(); }
};

TEST_P(LlamaParity, LogitsMatchTransformersAtRealPositionsOfALeftPaddedBatch) {
  TempDir d;
  const Reference ref = run_reference(dir(), d);
  const torch::Tensor ids = ref.get("input_ids"), mask = ref.get("attention_mask");
  auto logits_in = [&](torch::Dtype dtype) {
    auto model = load_llama(dir(), dtype);
    adapters::ForwardContext ctx;
    torch::InferenceMode guard;
    return model->forward({ids, {}, mask, {}}, nullptr, ctx);  // [B, T, V]
  };
  const torch::Tensor logits = logits_in(torch::kFloat32);
  testing::expect_oracle_parity(GetParam() + ": logits at real positions", logits, logits_in(torch::kFloat64),
                                ref.get("logits"), ref.get("logits.fp64"), mask);
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>()) << "padding rows must not turn into NaN";
}

TEST_P(LlamaParity, GreedyGenerationIsTokenIdenticalToTransformersGenerate) {
  TempDir d;
  const Reference ref = run_reference(dir(), d);
  // a top-1 margin inside the fp32 noise bound of the logits could go either way on another CPU
  const torch::Tensor margins = ref.get("margins");
  const torch::Tensor real = ref.get("attention_mask");
  const double noise = testing::max_abs_diff(ref.get("logits"), ref.get("logits.fp64"), real);
  const double bound = testing::fp32_bound(noise, testing::max_abs(ref.get("logits.fp64"), real));
  ASSERT_GT(margins.min().item<double>(), 10 * bound) << "top-1 margins too small: a tie could decide";
  auto model = load_llama(dir(), torch::kFloat32);
  auto tok = text::load_tokenizer(dir());
  const torch::Tensor ids = ref.get("input_ids"), mask = ref.get("attention_mask"), expected = ref.get("generated");
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t b = 0; b < ids.size(0); ++b) {
    const torch::Tensor row = ids[b].masked_select(mask[b].to(torch::kBool));
    prompts.emplace_back(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
  }
  runtime::SamplingOptions opt;
  opt.max_new_tokens = expected.size(1);
  opt.stop_at_eos = false;
  const auto out = runtime::generate(*model, *tok, prompts, opt);
  for (int64_t b = 0; b < ids.size(0); ++b) {
    const auto& e = expected[b];
    EXPECT_EQ(out[b].tokens, std::vector<int64_t>(e.data_ptr<int64_t>(), e.data_ptr<int64_t>() + e.numel()))
        << GetParam() << " row " << b;
  }
}

TEST_P(LlamaParity, PerplexityMatchesTransformers) {
  TempDir d;
  const Reference ref = run_reference(dir(), d);
  const torch::Tensor ids = ref.get("input_ids")[0].masked_select(ref.get("attention_mask")[0].to(torch::kBool));
  const int64_t n = ids.size(0) - 1;
  // summed NLL of the first prompt, float64 arithmetic on the model's logits
  auto nll_in = [&](torch::Dtype dtype) {
    auto model = load_llama(dir(), dtype);
    adapters::ForwardContext ctx;
    torch::InferenceMode guard;
    const torch::Tensor lp = model->forward({ids.unsqueeze(0), {}, {}, {}}, nullptr, ctx)[0].to(torch::kFloat64).log_softmax(-1);
    return -lp.narrow(0, 0, n).gather(-1, ids.narrow(0, 1, n).unsqueeze(-1)).sum().item<double>();
  };
  EXPECT_EQ(ref.get("nll_tokens").item<int64_t>(), n);
  const double nll = nll_in(torch::kFloat32), expected = ref.get("nll_sum").item<double>();
  const double bound = testing::expect_oracle_parity(GetParam() + ": summed NLL", nll, nll_in(torch::kFloat64),
                                                     expected, ref.get("nll_sum.fp64").item<double>());
  // perplexity exp(nll / n): its relative error is the NLL's absolute error / n
  EXPECT_NEAR(std::exp(nll / n), std::exp(expected / n), std::exp(expected / n) * 2 * bound / n);
}

INSTANTIATE_TEST_SUITE_P(TinyShapes, LlamaParity, ::testing::Values("llama-mha-tied", "llama-gqa", "llama3-rope"));

TEST(LlamaModel, MetaDeviceBuildsA7BShapeWithoutMemory) {
  LlamaConfig c;  // defaults: LLaMA-7B
  LlamaDecoder m(c, torch::TensorOptions().device(torch::kMeta).dtype(torch::kBFloat16));
  int64_t n = 0;
  for (const auto& p : m->parameters()) {
    EXPECT_TRUE(p.is_meta());
    n += p.numel();
  }
  EXPECT_EQ(n, 6738415616);  // LLaMA-7B
}

TEST(LlamaModel, CheckpointProblemsAreListedTogether) {
  TempDir d;
  const std::string src = std::string(testing::kTinyDir) + "/llama-gqa";
  std::filesystem::copy_file(src + "/config.json", d.path() + "/config.json");
  auto ckpt = io::SafetensorsCheckpoint::open(src);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& name : ckpt.names()) {
    if (name == "model.norm.weight") continue;                                  // missing
    torch::Tensor t = ckpt.tensor(name).clone();
    if (name == "model.layers.0.mlp.up_proj.weight") t = t.narrow(0, 0, 8).clone();  // wrong shape
    if (name == "model.layers.1.input_layernorm.weight") t = t.to(torch::kInt64);    // wrong dtype
    tensors.emplace_back(name, t);
  }
  tensors.emplace_back("model.extra.weight", torch::zeros({2}));  // unexpected
  io::save_safetensors(d.path() + "/model.safetensors", tensors);
  try {
    load_llama(d.path(), torch::kFloat32);
    FAIL() << "expected a CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("missing 1 [model.norm.weight]"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected 1 [model.extra.weight]"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.0.mlp.up_proj.weight is [8, 64] in the checkpoint, [176, 64] in the model"),
              std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.1.input_layernorm.weight has dtype Long"), std::string::npos) << m;
    EXPECT_NE(e.hint().find("different models"), std::string::npos);
  }
}

TEST(LlamaConfig, ReadsBothRopeSpellingsAndRejectsNonsense) {
  TempDir d;
  const auto c5 = LlamaConfig::from_hf(std::string(testing::kTinyDir) + "/llama3-rope");
  EXPECT_EQ(c5.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c5.rope_theta, 500000.0);
  EXPECT_EQ(c5.num_kv_heads, 1);
  const auto c4 = LlamaConfig::from_hf(d.write("c.json",
      R"({"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
          "num_attention_heads": 2, "rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
          "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})"));
  EXPECT_EQ(c4.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c4.rope_theta, 5e5);
  EXPECT_EQ(c4.num_kv_heads, 2);
  EXPECT_THROW(LlamaConfig::from_hf(d.write("bad.json", R"({"vocab_size": 10})")), CheckpointError);
  EXPECT_THROW(LlamaConfig::from_hf(d.write("heads.json",
      R"({"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
          "num_attention_heads": 2, "num_key_value_heads": 3})")), CheckpointError);
  EXPECT_THROW(LlamaConfig::from_hf(d.path() + "/nope"), CheckpointError);
}

TEST(LlamaConfig, AConfigJsonTooLargeForMetadataIsRefusedBeforeReading) {
  // a weights file saved as config.json was read whole and handed to the JSON parser
  TempDir d;
  const std::string path = d.write("m/config.json", "{");
  std::filesystem::resize_file(path, std::uintmax_t{2} << 30);  // sparse: nothing on disk
  try {
    LlamaConfig::from_hf(d.path() + "/m");
    FAIL() << "a 2 GiB config.json was read";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(e.path(), path);
    EXPECT_EQ(std::string(e.what()), path + ": is 2048 MiB, more than a JSON metadata file can be (64 MiB)");
    EXPECT_NE(e.hint().find("model.path"), std::string::npos) << e.hint();
  }
}

}  // namespace test_llama_parity
}  // namespace mmtune::model

namespace mmtune::model {
namespace test_llama_parity {

// bf16 on CPU runs the same code path: weights built directly in bf16, the same logits up to bf16
// rounding. "Up to bf16 rounding" is measured, not guessed: transformers' bf16 model on the same
// batch differs from its fp32 one by `noise` (logits_bf16 of llama_reference.py), and mmtune's
// bf16-vs-fp32 difference must stay within 4x that (tests/numerics.h's k). bf16 keeps 8 bits of
// mantissa, so these differences are ~1e-1 on logits up to ~10, not fp32's ~1e-5.
TEST(LlamaModel, Bf16OnCpuRunsTheSamePath) {
  const std::string dir = std::string(testing::kTinyDir) + "/llama-gqa";
  TempDir d;
  const Reference ref = run_reference(dir, d);
  auto f32 = load_llama(dir, torch::kFloat32);
  auto bf16 = load_llama(dir, torch::kBFloat16);
  for (const auto& p : bf16->parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  const torch::Tensor ids = ref.get("input_ids"), mask = ref.get("attention_mask");
  adapters::ForwardContext ctx;
  torch::InferenceMode guard;
  const torch::Tensor a = f32->forward({ids, {}, mask, {}}, nullptr, ctx);
  const torch::Tensor b = bf16->forward({ids, {}, mask, {}}, nullptr, ctx);
  EXPECT_EQ(b.scalar_type(), torch::kBFloat16);
  const double noise = testing::max_abs_diff(ref.get("logits_bf16"), ref.get("logits"), mask);
  const double diff = testing::max_abs_diff(b.to(torch::kFloat32), a, mask);
  std::printf("[numerics] llama-gqa bf16 vs fp32 logits: transformers %.3g, mmtune %.3g (%.2f x, bound %.3g)\n", noise,
              diff, diff / noise, testing::kNoiseFactor * noise);
  EXPECT_GT(noise, 0.0) << "the reference's bf16 run must round";
  EXPECT_LE(diff, testing::kNoiseFactor * noise);
}

}  // namespace test_llama_parity
}  // namespace mmtune::model
