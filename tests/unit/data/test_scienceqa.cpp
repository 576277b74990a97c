// The ScienceQA reader: a hand-written data set in the official layout (fields, order, image
// paths, meta, captions, limit), the real sample with the real id space, and every error case.
#include <filesystem>
#include <functional>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_utils.h"
#include <mmtune/core/errors.h>
#include <mmtune/data/scienceqa.h>

namespace mmtune::data {
namespace test_scienceqa {

namespace fs = std::filesystem;
using nlohmann::json;

std::string sqa(const std::string& file) {
  return std::string(testing::kSharedDir) + "/data/scienceqa/" + file;
}

json problem(const std::string& question, std::vector<std::string> choices, int answer,
             const std::string& split, bool image, const std::string& hint = "") {
  return {{"question", question},
          {"choices", choices},
          {"answer", answer},
          {"hint", hint},
          {"image", image ? json("image.png") : json(nullptr)},
          {"task", "closed choice"},
          {"grade", "grade3"},
          {"subject", "natural science"},
          {"topic", "physics"},
          {"category", "Colours"},
          {"skill", "Name colours"},
          {"lecture", "L1\nL2"},
          {"solution", "S."},
          {"split", split}};
}

// Three problems (7: image, train; 3: text with a hint, train; 12: image, val) and their splits.
struct Tiny {
  testing::TempDir dir;
  std::string root = dir.path() + "/sqa";
  json problems = {
      {"3", problem("Which is hot?", {"ice", "fire"}, 1, "train", false, "Fire burns.")},
      {"7", problem("What colour?", {"red", "blue", "green"}, 2, "train", true)},
      {"12", problem("How many?", {"1", "2"}, 0, "val", true)}};
  json splits = {
      {"train", {"7", "3"}}, {"val", json::array({"12"})}, {"trainval", {"7", "3", "12"}}};

  Tiny() { write(); }
  void write() const {
    dir.write("sqa/problems.json", problems.dump());
    dir.write("sqa/pid_splits.json", splits.dump());
    dir.write("sqa/images/train/7/image.png", "png");
    dir.write("sqa/images/val/12/image.png", "png");
  }
  ScienceQAOptions options() const {
    ScienceQAOptions o;
    o.root = root;
    return o;
  }
};

// Runs `f`, expects a DataError whose path ends with `path_end` and whose message and hint
// contain the given fragments.
void expect_data_error(const std::function<void()>& f, const std::string& path_end,
                       const std::string& in_message, const std::string& in_hint = "") {
  try {
    f();
    ADD_FAILURE() << "no DataError (expected: " << in_message << ")";
  } catch (const DataError& e) {
    EXPECT_TRUE(e.path().ends_with(path_end)) << e.path();
    EXPECT_NE(std::string(e.what()).find(in_message), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find(in_hint), std::string::npos) << e.hint();
    EXPECT_FALSE(e.hint().empty());
  }
}

TEST(ScienceQA, ReadsASplitInPidSplitsOrderWithPromptsImagesAndMeta) {
  Tiny t;
  const ScienceQAData d = read_scienceqa(t.options(), "train");
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.available_splits, (std::vector<std::string>{"train", "trainval", "val"}));
  const Example& img = d.examples[0];
  EXPECT_EQ(img.id, "7");
  EXPECT_EQ(img.prompt,
            "Question: What colour?\nContext: N/A\nOptions: (A) red (B) blue (C) green\nResponse:");
  EXPECT_EQ(img.answer, "The answer is C. BECAUSE: L1\\nL2 S.");
  EXPECT_EQ(img.choices, (std::vector<std::string>{"red", "blue", "green"}));
  EXPECT_EQ(img.answer_index, 2);
  EXPECT_EQ(img.image_path, t.root + "/images/train/7/image.png");
  EXPECT_EQ(img.meta.at("has_image"), "1");
  EXPECT_EQ(img.meta.at("image"), "image.png");
  EXPECT_EQ(img.meta.at("subject"), "natural science");
  EXPECT_EQ(img.meta.at("grade"), "grade3");
  EXPECT_EQ(img.meta.at("category"), "Colours");
  EXPECT_EQ(img.meta.at("split"), "train");
  const Example& txt = d.examples[1];
  EXPECT_EQ(txt.id, "3");
  EXPECT_TRUE(txt.image_path.empty());
  EXPECT_EQ(txt.meta.at("hint"), "Fire burns.");
  EXPECT_EQ(txt.meta.at("has_image"), "0");
  EXPECT_EQ(txt.meta.at("image"), "");
  EXPECT_NE(txt.prompt.find("\nContext: Fire burns.\n"), std::string::npos);
}

TEST(ScienceQA, ImagesLiveInTheProblemsOwnSplitFolder) {
  Tiny t;
  const ScienceQAData d = read_scienceqa(t.options(), "trainval");
  ASSERT_EQ(d.examples.size(), 3u);
  EXPECT_EQ(d.examples[2].image_path, t.root + "/images/val/12/image.png");
  t.problems["12"].erase("split");  // without the field, the requested split names the folder
  t.write();
  ScienceQAOptions o = t.options();
  o.check_images = false;
  EXPECT_EQ(read_scienceqa(o, "trainval").examples[2].image_path,
            t.root + "/images/trainval/12/image.png");
}

TEST(ScienceQA, FormatLimitAndCaptionsComeFromTheOptions) {
  Tiny t;
  t.dir.write("sqa/captions.json", R"({"model": "x", "captions": {"7": "A green ball."}})");
  ScienceQAOptions o = t.options();
  o.prompt_format = parse_prompt_format("CQM-A");
  o.captions_file = "captions.json";  // relative to root
  o.use_caption = true;
  o.limit = 1;
  const ScienceQAData d = read_scienceqa(o, "train");
  ASSERT_EQ(d.examples.size(), 1u);
  EXPECT_EQ(d.examples[0].prompt,
            "Context: A green ball.\nQuestion: What colour?\nOptions: (A) red (B) blue (C) "
            "green\nResponse:");
  EXPECT_EQ(d.examples[0].answer, "The answer is C.");
  o.use_caption = false;  // the file is read but the caption stays out
  EXPECT_NE(read_scienceqa(o, "train").examples[0].prompt.find("Context: N/A"), std::string::npos);
}

TEST(ScienceQA, OptionsFromTheDataConfig) {
  config::DataConfig c;
  c.root = "/data/sqa";
  c.prompt_format = "QCM-LEA";
  c.on_bad_sample = "skip";
  c.limit = 7;
  c.captions_file = "captions.json";
  c.use_caption = true;
  const ScienceQAOptions o = scienceqa_options(c);
  EXPECT_EQ(o.root, "/data/sqa");
  EXPECT_EQ(prompt_format_name(o.prompt_format), "QCM-LEA");
  EXPECT_TRUE(o.skip_bad_samples);
  EXPECT_TRUE(o.check_images);
  EXPECT_EQ(o.limit, 7);
  EXPECT_TRUE(o.use_caption);
  EXPECT_EQ(scienceqa_path(o.root, o.problems_file), "/data/sqa/problems.json");
  EXPECT_EQ(scienceqa_path(o.root, "/abs/p.json"), "/abs/p.json");
  c.prompt_format = "QCM-XL";
  EXPECT_THROW(scienceqa_options(c), ConfigError);
}

TEST(ScienceQA, MissingImagesAreErrorsOrCountedSkips) {
  Tiny t;
  fs::remove(t.root + "/images/train/7/image.png");
  expect_data_error([&] { read_scienceqa(t.options(), "train"); }, "/images/train/7/image.png",
                    "problem '7'", "on_bad_sample");
  ScienceQAOptions o = t.options();
  o.skip_bad_samples = true;
  const ScienceQAData d = read_scienceqa(o, "train");
  EXPECT_EQ(d.skipped, 1);
  EXPECT_EQ(d.skipped_ids, std::vector<std::string>{"7"});
  ASSERT_EQ(d.examples.size(), 1u);
  EXPECT_EQ(d.examples[0].id, "3");
  o.skip_bad_samples = false;
  o.check_images = false;  // the path is kept; collate reports it when it loads
  EXPECT_EQ(read_scienceqa(o, "train").examples[0].image_path,
            t.root + "/images/train/7/image.png");
}

TEST(ScienceQA, MissingFilesNameThemAndPointAtTheLayout) {
  Tiny t;
  ScienceQAOptions o = t.options();
  o.root = t.dir.path() + "/nowhere";
  expect_data_error([&] { read_scienceqa(o, "train"); }, "nowhere/pid_splits.json", "not found",
                    "data.root");
  fs::remove(t.root + "/problems.json");
  expect_data_error([&] { read_scienceqa(t.options(), "train"); }, "sqa/problems.json",
                    "problems file not found", "problems.json");
  Tiny u;
  o = u.options();
  o.captions_file = "captions.json";
  expect_data_error([&] { read_scienceqa(o, "train"); }, "sqa/captions.json", "not found");
  o.captions_file = "";
  o.use_caption = true;
  expect_data_error([&] { read_scienceqa(o, "train"); }, "problems.json", "no captions file",
                    "captions_file");
}

TEST(ScienceQA, UnknownSplitListsTheAvailableOnes) {
  Tiny t;
  expect_data_error([&] { read_scienceqa(t.options(), "tset"); }, "sqa/pid_splits.json",
                    "no split 'tset'", "available splits: train, trainval, val");
  // the real file offers the official seven
  ScienceQAOptions o = t.options();
  o.splits_file = sqa("pid_splits.json");
  expect_data_error([&] { read_scienceqa(o, "dev"); }, "scienceqa/pid_splits.json",
                    "no split 'dev'", "minitest, minitrain, minival, test, train, trainval, val");
}

TEST(ScienceQA, PidOfTheSplitMissingFromProblemsIsAnError) {
  Tiny t;
  t.splits["val"] = {"12", "99"};
  t.write();
  expect_data_error([&] { read_scienceqa(t.options(), "val"); }, "sqa/problems.json",
                    "pid '99' of split 'val'", "same ScienceQA release");
}

TEST(ScienceQA, BadJsonNamesTheFile) {
  Tiny t;
  t.dir.write("sqa/problems.json", R"({"3": {"question": "x", )");
  expect_data_error([&] { read_scienceqa(t.options(), "train"); }, "sqa/problems.json",
                    "not valid JSON", "problems.json is an object");
  Tiny u;
  u.dir.write("sqa/pid_splits.json", "[1, 2]");
  expect_data_error([&] { read_scienceqa(u.options(), "train"); }, "sqa/pid_splits.json",
                    "not an object", "{split: [pid, ...]}");
  u.dir.write("sqa/pid_splits.json", R"({"train": "7"})");
  expect_data_error([&] { read_scienceqa(u.options(), "train"); }, "sqa/pid_splits.json",
                    "split 'train'");
  Tiny v;
  v.dir.write("sqa/captions.json", R"({"7": "no captions object"})");
  ScienceQAOptions o = v.options();
  o.captions_file = "captions.json";
  expect_data_error([&] { read_scienceqa(o, "train"); }, "sqa/captions.json",
                    "no \"captions\" object");
}

TEST(ScienceQA, MalformedProblemsNameThePidAndTheField) {
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases{
      {[](json& p) { p.erase("question"); }, "\"question\" is missing"},
      {[](json& p) { p["choices"] = json::array(); }, "\"choices\""},
      {[](json& p) {
         p["choices"] = {"a", 2};
       },
       "a choice is not a string"},
      {[](json& p) { p["answer"] = 5; }, "\"answer\" 5 is not an index"},
      {[](json& p) { p["answer"] = "B"; }, "\"answer\" is missing or not an integer"},
      {[](json& p) { p["hint"] = 3; }, "\"hint\" is not a string"},
      {[](json& p) { p["image"] = true; }, "\"image\""},
  };
  for (const auto& [edit, fragment] : cases) {
    Tiny t;
    edit(t.problems["3"]);
    t.write();
    expect_data_error([&] { read_scienceqa(t.options(), "train"); }, "sqa/problems.json",
                      "problem '3': " + fragment);
  }
  Tiny t;  // optional fields may be absent or null
  t.problems["3"].erase("lecture");
  t.problems["3"]["solution"] = nullptr;
  t.write();
  EXPECT_EQ(read_scienceqa(t.options(), "train").examples[1].answer, "The answer is B. BECAUSE:");
}

TEST(ScienceQA, RealSampleMatchesTheRealIdSpace) {
  // the 150 real problems: their split labels agree with the real pid_splits.json
  const auto problems = read_scienceqa_problems(sqa("problems_sample150.json"));
  const auto splits = read_scienceqa_splits(sqa("pid_splits.json"));
  ASSERT_EQ(problems.size(), 150u);
  EXPECT_EQ(splits.at("train").size(), 12726u);
  EXPECT_EQ(splits.at("minitest").size(), 424u);
  std::map<std::string, int> per_split;
  int with_image = 0;
  for (const auto& [pid, p] : problems) {
    const auto& ids = splits.at(p.split);
    EXPECT_NE(std::find(ids.begin(), ids.end(), pid), ids.end()) << pid << " not in " << p.split;
    ++per_split[p.split];
    with_image += p.image.has_value();
  }
  EXPECT_EQ(per_split, (std::map<std::string, int>{{"test", 50}, {"train", 50}, {"val", 50}}));
  EXPECT_EQ(with_image, 67);
  EXPECT_EQ(read_scienceqa_captions(sqa("captions.json")).size(), 10332u);
}

TEST(ScienceQA, RealSampleWithTheFullSplitsFailsOnTheFirstAbsentPid) {
  ScienceQAOptions o;
  o.problems_file = sqa("problems_sample150.json");
  o.splits_file = sqa("pid_splits.json");
  o.check_images = false;
  o.limit = 3;  // "1", "2", "3" are in the sample
  EXPECT_EQ(read_scienceqa(o, "train").examples.size(), 3u);
  o.limit = 0;
  expect_data_error([&] { read_scienceqa(o, "train"); }, "problems_sample150.json",
                    "of split 'train'");
}

}  // namespace test_scienceqa
}  // namespace mmtune::data
