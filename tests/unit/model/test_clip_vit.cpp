// The CLIP vision tower against transformers' CLIPVisionModel (scripts/reference/clip_reference.py).
#include <gtest/gtest.h>

#include <mmtune/io/safetensors.h>
#include <mmtune/model/clip_vit.h>

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
  const int64_t L = vit->config().num_layers;
  std::vector<int64_t> all;
  for (int64_t k = 0; k <= L; ++k) all.push_back(k);
  adapters::ForwardContext ctx;
  torch::InferenceMode guard;
  const auto states = vit->forward(ref->tensor("pixels"), all, ctx);
  double worst = 0;
  for (int64_t k = 0; k <= L; ++k) {
    worst = std::max(worst, (states[k] - ref->tensor("hidden_" + std::to_string(k))).abs().max().item<double>());
  }
  EXPECT_LE(worst, 1e-4);
  // LLaVA's choice (-2) and LaVIN's (CLS after chosen blocks) select the same tensors
  const auto sel = vit->forward(ref->tensor("pixels"), {-2, -1}, ctx);
  EXPECT_TRUE(torch::equal(sel[0], states[L - 1]));
  EXPECT_TRUE(torch::equal(sel[1], states[L]));
  const torch::Tensor pooled = vit->post_layernorm(states[L].select(1, 0));
  EXPECT_LE((pooled - ref->tensor("pooled")).abs().max().item<double>(), 1e-4);
  std::cout << GetParam() << " hidden states max-abs diff " << worst << "\n";
}

INSTANTIATE_TEST_SUITE_P(TinyShapes, ClipParity, ::testing::Values("clip-vit", "clip-vit-gelu"));

TEST(ClipVit, OutOfRangeLayerIsAnError) {
  auto vit = load_clip_vision(std::string(testing::kTinyDir) + "/clip-vit", torch::kFloat32);
  adapters::ForwardContext ctx;
  EXPECT_THROW(vit->forward(torch::zeros({1, 3, 32, 32}), {5}, ctx), c10::Error);
}

}  // namespace
}  // namespace mmtune::model
