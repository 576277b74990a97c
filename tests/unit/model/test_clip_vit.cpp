// The CLIP vision tower against transformers' CLIPVisionModel (scripts/reference/clip_reference.py).
// Tolerances: the reference runs in float32 and float64; mmtune in float64 matches it to 1e-9, in
// float32 within 4x the reference's own fp32-vs-fp64 difference (tests/numerics.h).
#include <gtest/gtest.h>

#include <mmtune/io/safetensors.h>
#include <mmtune/model/clip_vit.h>

#include "numerics.h"
#include "test_utils.h"

namespace mmtune::model {
namespace {

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

TEST(ClipVit, OutOfRangeLayerIsAnError) {
  auto vit = load_clip_vision(std::string(testing::kTinyDir) + "/clip-vit", torch::kFloat32);
  adapters::ForwardContext ctx;
  EXPECT_THROW(vit->forward(torch::zeros({1, 3, 32, 32}), {5}, ctx), c10::Error);
}

}  // namespace
}  // namespace mmtune::model
