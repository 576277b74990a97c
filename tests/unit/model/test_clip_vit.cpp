// The CLIP vision tower against transformers' CLIPVisionModel (scripts/reference/clip_reference.py).
// Tolerances: the reference runs in float32 and float64; mmtune in float64 matches it to 1e-9, in
// float32 within 4x the reference's own fp32-vs-fp64 difference (tests/numerics.h).
// A quantized tower (vision.quantize) against the same reference run on the weights it quantized
// and dequantized itself (the formats of docs/QUANTIZATION.md): the stored codes bit for bit, the
// hidden states within the fp32 bound (quantized kernels have no float64 path).
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/model/clip_vit.h>
#include <mmtune/model/quantize.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "numerics.h"
#include "reference_codes.h"
#include "test_utils.h"

namespace mmtune::model {
namespace test_clip_vit {

class ClipParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ClipParity, EveryHiddenStateMatchesTransformers) {
  testing::TempDir d;
  const std::string dir = std::string(testing::kTinyDir) + "/" + GetParam();
  const std::string out = d.path() + "/ref.safetensors";
  const auto r = testing::run_process({testing::kPython, std::string(testing::kSourceDir) + "/scripts/reference/clip_reference.py",
                                       "--model", dir, "--out", out}, {}, std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ref = io::SafetensorsFile::open(out);
  auto vit = load_clip_vision(dir, torch::kFloat32);
  auto vit64 = load_clip_vision(dir, torch::kFloat64);
  const int64_t L = vit->config().num_layers;
  std::vector<int64_t> all;
  for (int64_t k = 0; k <= L; ++k) all.push_back(k);
  adapters::ForwardContext ctx;
  torch::InferenceMode guard;
  const torch::Tensor pixels = ref->tensor("pixels");
  const auto states = vit->forward(pixels, all, ctx);
  const auto states64 = vit64->forward(pixels.to(torch::kFloat64), all, ctx);
  for (int64_t k = 0; k <= L; ++k) {
    const std::string name = "hidden_" + std::to_string(k);
    testing::expect_oracle_parity(GetParam() + ": " + name, states[k], states64[k], ref->tensor(name),
                                  ref->tensor(name + ".fp64"));
  }
  // LLaVA's choice (-2) and LaVIN's (CLS after chosen blocks) select the same tensors: the same
  // computation, so bitwise
  const auto sel = vit->forward(pixels, {-2, -1}, ctx);
  EXPECT_TRUE(torch::equal(sel[0], states[L - 1]));
  EXPECT_TRUE(torch::equal(sel[1], states[L]));
  testing::expect_oracle_parity(GetParam() + ": pooled", vit->post_layernorm(states[L].select(1, 0)),
                                vit64->post_layernorm(states64[L].select(1, 0)), ref->tensor("pooled"),
                                ref->tensor("pooled.fp64"));
}

INSTANTIATE_TEST_SUITE_P(TinyShapes, ClipParity, ::testing::Values("clip-vit", "clip-vit-gelu"));

struct ClipQuantCase {
  std::string model, mode;
  int64_t group;
};

class ClipQuantizedParity : public ::testing::TestWithParam<ClipQuantCase> {};

TEST_P(ClipQuantizedParity, CodesAreTheReferencesAndHiddenStatesMatchTransformersOnTheDequantizedWeights) {
  const ClipQuantCase& qc = GetParam();
  testing::TempDir d;
  const std::string dir = std::string(testing::kTinyDir) + "/" + qc.model;
  const auto ref = testing_codes::run_reference(
      d, "clip_reference.py", {"--model", dir, "--quantize", qc.mode, "--group", std::to_string(qc.group)});
  ASSERT_TRUE(ref);
  Quantization q;
  q.mode = qc.mode;
  q.group = qc.group;
  auto vit = load_clip_vision(dir, torch::kFloat32, q);
  // every block Linear is quantized; the embeddings and norms are not
  int64_t quantized = 0;
  for (const auto& m : vit->modules())
    if (auto* p = dynamic_cast<ProjectionImpl*>(m.get())) {
      EXPECT_TRUE(p->quantized());
      quantized += p->quantized();
    }
  EXPECT_EQ(quantized, 6 * vit->config().num_layers);
  EXPECT_EQ(testing_codes::expect_reference_codes(*vit, *ref), 4);
  const int64_t L = vit->config().num_layers;
  std::vector<int64_t> all;
  for (int64_t k = 0; k <= L; ++k) all.push_back(k);
  adapters::ForwardContext ctx;
  torch::InferenceMode guard;
  const auto states = vit->forward(ref->tensor("pixels"), all, ctx);
  for (int64_t k = 0; k <= L; ++k) {
    const std::string name = "hidden_" + std::to_string(k);
    testing::expect_oracle_parity(qc.model + " " + q.describe() + ": " + name, states[k], {}, ref->tensor(name),
                                  ref->tensor(name + ".fp64"));
  }
}

INSTANTIATE_TEST_SUITE_P(TinyShapes, ClipQuantizedParity,
                         ::testing::Values(ClipQuantCase{"clip-vit", "int8", 128}, ClipQuantCase{"clip-vit", "int4", 32},
                                           ClipQuantCase{"clip-vit-gelu", "int8", 128}),
                         [](const auto& info) {
                           std::string n = info.param.model + "_" + info.param.mode + "_g" + std::to_string(info.param.group);
                           for (auto& ch : n) if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// A group that does not divide a block's inputs names the weight and the fix before anything is
// loaded; model.quant_fallback=int8 keeps such weights in int8; fp64 has no quantized kernels.
TEST(ClipVit, AQuantizationTheShapesCannotTakeNamesTheWeight) {
  const std::string dir = std::string(testing::kTinyDir) + "/clip-vit";  // width 64, MLP 128
  Quantization q;
  q.mode = "int4";
  q.group = 128;
  try {
    load_clip_vision(dir, torch::kFloat32, q);
    ADD_FAILURE() << "int4 group 128 on 64 inputs loaded";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("vision_model.encoder.layers.0.self_attn.k_proj has 64 inputs"), std::string::npos) << what;
    EXPECT_NE(e.hint().find("model.quant_group=64"), std::string::npos) << e.hint();
    EXPECT_NE(e.hint().find("vision.quantize=int8"), std::string::npos) << e.hint();
  }
  q.fallback = "int8";
  auto vit = load_clip_vision(dir, torch::kFloat32, q);
  EXPECT_EQ(find_projection(*vit, "vision_model.encoder.layers.0.self_attn.k_proj")->quantized_weight().mode, "int8");
  EXPECT_EQ(find_projection(*vit, "vision_model.encoder.layers.0.mlp.fc2")->quantized_weight().mode, "int4");  // 128 inputs
  q.fallback = "none";
  q.mode = "int8";
  EXPECT_THROW(load_clip_vision(dir, torch::kFloat64, q), UsageError);
}

TEST(ClipVit, OutOfRangeLayerIsAnError) {
  auto vit = load_clip_vision(std::string(testing::kTinyDir) + "/clip-vit", torch::kFloat32);
  adapters::ForwardContext ctx;
  EXPECT_THROW(vit->forward(torch::zeros({1, 3, 32, 32}), {5}, ctx), c10::Error);
}

// config.json is checked before anything is allocated: sizes > 0 and equal to the weights' shapes
// (fuzz_model_config: intermediate_size -60 reached LibTorch as a negative dimension).
TEST(ClipVit, ConfigSizesAreCheckedAgainstTheWeightsBeforeBuilding) {
  namespace fs = std::filesystem;
  const std::string tiny = std::string(testing::kTinyDir) + "/clip-vit";
  const nlohmann::json good = nlohmann::json::parse(testing::read_text(tiny + "/config.json"));
  testing::TempDir d;
  auto error_for = [&](const std::string& key, const nlohmann::json& value) -> std::string {
    nlohmann::json j = good;
    (j.contains("vision_config") ? j["vision_config"] : j)[key] = value;
    const std::string dir = d.path() + "/" + key;
    fs::create_directories(dir);
    d.write(key + "/config.json", j.dump());
    if (!fs::exists(dir + "/model.safetensors")) fs::create_symlink(tiny + "/model.safetensors", dir + "/model.safetensors");
    try {
      load_clip_vision(dir, torch::kFloat32);
    } catch (const CheckpointError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(error_for("intermediate_size", -60).find("intermediate_size must be > 0, got -60"), std::string::npos);
  EXPECT_NE(error_for("intermediate_size", 1000000000).find("intermediate_size x hidden_size"), std::string::npos);
  EXPECT_NE(error_for("num_hidden_layers", 1000000).find("num_hidden_layers 1000000 is not the weights'"), std::string::npos);
  EXPECT_NE(error_for("image_size", int64_t{1} << 40).find("beyond any CLIP tower"), std::string::npos);
  EXPECT_NE(error_for("hidden_size", 0).find("hidden_size must be > 0"), std::string::npos);
}

}  // namespace test_clip_vit
}  // namespace mmtune::model
