// The pickle converters (the only code that unpickles) give back the original model: a tiny HF
// model written out in Meta's and OpenAI's formats (scripts/reference/make_pickle_checkpoints.py),
// converted by scripts/convert_meta_llama.py and scripts/convert_openai_clip.py, loads in C++ and
// computes exactly what the original computes.
#include <gtest/gtest.h>

#include <mmtune/model/clip_vit.h>
#include <mmtune/model/weights.h>

#include "test_utils.h"

namespace mmtune::model {
namespace test_converters {

int python(const std::vector<std::string>& args) {
  std::vector<std::string> argv{testing::kPython};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = testing::run_process(argv, {}, std::chrono::seconds(120));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  return r.exit_code;
}

TEST(Converters, MetaAndOpenAiFormatsConvertBackToTheOriginals) {
  testing::TempDir d;
  const std::string src = testing::kSourceDir, tiny = testing::kTinyDir;
  ASSERT_EQ(python({src + "/scripts/reference/make_pickle_checkpoints.py", "--llama", tiny + "/llama-gqa", "--clip",
                    tiny + "/clip-vit", "--out", d.path()}), 0);
  ASSERT_EQ(python({src + "/scripts/convert_meta_llama.py", "--input", d.path() + "/meta", "--out", d.path() + "/llama",
                    "--tokenizer", tiny + "/llama-gqa/tokenizer.model"}), 0);
  ASSERT_EQ(python({src + "/scripts/convert_openai_clip.py", "--input", d.path() + "/openai-clip.pt", "--out",
                    d.path() + "/clip", "--heads", "4"}), 0);
  torch::InferenceMode guard;
  adapters::ForwardContext ctx;
  auto original = load_llama(tiny + "/llama-gqa", torch::kFloat32);
  auto converted = load_llama(d.path() + "/llama", torch::kFloat32);
  const torch::Tensor ids = torch::randint(3, 400, {2, 11});
  EXPECT_TRUE(torch::equal(original->forward({ids, {}, {}, {}}, nullptr, ctx), converted->forward({ids, {}, {}, {}}, nullptr, ctx)));
  auto vit = load_clip_vision(tiny + "/clip-vit", torch::kFloat32);      // transformers 5 names (no prefix)
  auto vit2 = load_clip_vision(d.path() + "/clip", torch::kFloat32);     // "vision_model." names, as openai/clip-*
  const torch::Tensor pixels = torch::randn({2, 3, 32, 32});
  EXPECT_TRUE(torch::equal(vit->forward(pixels, {-1}, ctx)[0], vit2->forward(pixels, {-1}, ctx)[0]));
}

}  // namespace test_converters
}  // namespace mmtune::model
