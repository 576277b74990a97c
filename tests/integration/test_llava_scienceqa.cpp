// ScienceQA through LLaVA's conversion (scripts/scienceqa_to_llava.py): the conversion equals the
// real one LLaVA's authors published, and a family trained on it (IAA) is scored by category with
// the answers and categories taken from problems.json.
#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "test_paths.h"
#include "test_utils.h"

namespace mmtune::testing {
namespace test_llava_scienceqa {

namespace fs = std::filesystem;

TEST(LlavaScienceQA, ConversionEqualsTheRealLlavaFileOnTheSharedProblems) {
  const std::string sqa = std::string(kSharedDir) + "/data/scienceqa";
  const auto r = run_process({kPython, std::string(kSourceDir) + "/scripts/scienceqa_to_llava.py", "--root", sqa,
                              "--problems", "problems_sample150.json", "--check", sqa + "/llava_test_CQM-A.json"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("50/50 shared problems convert exactly"), std::string::npos) << r.out;
}

TEST(LlavaScienceQA, IaaTrainedOnTheConversionIsScoredByCategory) {
  TempDir dir;
  const std::string conv = dir.path() + "/llava";
  const auto c = run_process({kPython, std::string(kSourceDir) + "/scripts/scienceqa_to_llava.py", "--root",
                              kSyntheticSqaDir, "--out", conv, "--splits", "train", "test"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const std::string cfg = std::string(kSourceDir) + "/configs/iaa/tiny.yaml";
  const std::vector<std::string> common{std::string("model.path=") + kTinyDir + "/llama-gqa",
                                        std::string("vision.path=") + kTinyDir + "/clip-vit",
                                        std::string("data.image_folder=") + kSyntheticSqaDir + "/images",
                                        "output_dir=" + dir.path() + "/run"};
  auto train = std::vector<std::string>{kMmtuneBin, "train", "--config", cfg, "data.json=" + conv + "/train.json",
                                        "train.max_steps=6", "data.num_workers=0"};
  train.insert(train.end(), common.begin(), common.end());
  const auto t = run_process(train, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(180));
  ASSERT_EQ(t.exit_code, 0) << t.err;
  auto eval = std::vector<std::string>{kMmtuneBin, "eval", "--config", cfg, "--checkpoint", dir.path() + "/run",
                                       "--task", "scienceqa", "--split", "test", "--limit", "24",
                                       "--output", dir.path() + "/results.json", "data.json=" + conv + "/test.json",
                                       std::string("data.root=") + kSyntheticSqaDir, "eval.generation.max_new_tokens=4"};
  eval.insert(eval.end(), common.begin(), common.end());
  const auto e = run_process(eval, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(180));
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_NE(e.out.find("IMG"), std::string::npos) << e.out;
  const auto j = nlohmann::json::parse(read_text(dir.path() + "/results.json"));
  EXPECT_EQ(j["count"].get<int64_t>(), 24);
  EXPECT_EQ(j["outputs"].size(), 24u);
  EXPECT_EQ(j["results"].size(), 24u);
  // the categories are problems.json's: IMG counts the converted entries that carry an image
  const auto conv_json = nlohmann::json::parse(read_text(conv + "/test.json"));
  int64_t with_image = 0;
  for (size_t i = 0; i < 24; ++i) with_image += conv_json[i].contains("image") ? 1 : 0;
  EXPECT_EQ(j["categories"]["IMG"]["count"].get<int64_t>(), with_image) << j["categories"].dump();
}

}  // namespace test_llava_scienceqa
}  // namespace mmtune::testing
