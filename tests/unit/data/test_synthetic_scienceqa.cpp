// scripts/make_synthetic_scienceqa.py: the data set it writes loads with the ScienceQA reader,
// has the splits, images and categories the trainer and the eval tables need, its questions need
// the right input, and it is a function of the seed.
#include <filesystem>
#include <gtest/gtest.h>
#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "test_utils.h"
#include <mmtune/data/scienceqa.h>

namespace mmtune::data {
namespace test_synthetic_scienceqa {

namespace fs = std::filesystem;

testing::ProcessResult generate(const std::string& out, const std::vector<std::string>& args) {
  std::vector<std::string> argv{
      testing::kPython, std::string(testing::kSourceDir) + "/scripts/make_synthetic_scienceqa.py",
      "--out", out};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::run_process(argv);
}

bool is_png(const std::string& path) {
  const std::string bytes = testing::read_text(path);
  return bytes.size() > 8 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
}

ScienceQAData read(const std::string& root, const std::string& split) {
  ScienceQAOptions o;
  o.root = root;
  return read_scienceqa(o, split);  // checks that every image file exists
}

TEST(SyntheticScienceQA, LoadsWithTheReaderWithEverySplitAndItsImages) {
  testing::TempDir d;
  const auto r = generate(d.path(), {"--train", "120", "--val", "30", "--test", "30", "--seed", "3",
                                     "--image-size", "32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::map<std::string, size_t> sizes{{"train", 120},    {"val", 30},       {"test", 30},
                                            {"trainval", 150}, {"minitrain", 12}, {"minival", 3},
                                            {"minitest", 3}};
  std::set<std::string> ids;
  for (const auto& [split, n] : sizes) {
    const ScienceQAData data = read(d.path(), split);
    EXPECT_EQ(data.examples.size(), n) << split;
    if (split == "train" || split == "val" || split == "test") {
      for (const auto& ex : data.examples) {
        EXPECT_EQ(ex.meta.at("split"), split);
        EXPECT_TRUE(ids.insert(ex.id).second) << "pid " << ex.id << " in two splits";
      }
    }
  }
  EXPECT_EQ(ids.size(), 180u);

  int images = 0, hints = 0, neither = 0;
  std::set<std::string> subjects, grades;
  std::map<std::string, std::set<int64_t>>
      answer_slots;  // question family -> answer positions seen
  for (const std::string split : {"train", "val", "test"}) {
    for (const auto& ex : read(d.path(), split).examples) {
      const std::string& right = ex.choices.at(static_cast<size_t>(ex.answer_index));
      const std::string& hint = ex.meta.at("hint");
      subjects.insert(ex.meta.at("subject"));
      grades.insert(ex.meta.at("grade"));
      EXPECT_NE(ex.answer.find("The answer is "), std::string::npos);
      if (!ex.image_path.empty()) {
        ++images;
        EXPECT_EQ(ex.image_path, d.path() + "/images/" + split + "/" + ex.id + "/image.png");
        EXPECT_TRUE(is_png(ex.image_path)) << ex.image_path;
        EXPECT_TRUE(hint.empty());
        // the picture holds the answer: the question text never names it
        const std::string question = ex.prompt.substr(0, ex.prompt.find("\nContext:"));
        EXPECT_EQ(question.find(right), std::string::npos) << ex.prompt;
        answer_slots[ex.meta.at("category")].insert(ex.answer_index);
      } else if (!hint.empty()) {
        ++hints;
        EXPECT_NE(hint.find(right), std::string::npos)
            << "the hint must state the answer: " << ex.prompt;
      } else {
        ++neither;
      }
    }
  }
  EXPECT_GE(images, 60);  // about half of 180
  EXPECT_LE(images, 120);
  EXPECT_GE(hints, 40);
  EXPECT_GE(neither, 5);
  EXPECT_EQ(subjects,
            (std::set<std::string>{"natural science", "social science", "language science"}));
  for (const auto& g : grades) EXPECT_TRUE(g.starts_with("grade")) << g;
  EXPECT_GE(grades.size(), 8u);
  EXPECT_EQ(answer_slots.size(), 3u);  // colours, shapes, counting
  for (const auto& [family, slots] : answer_slots)
    EXPECT_GE(slots.size(), 2u) << family << ": options not shuffled";
}

TEST(SyntheticScienceQA, IsAFunctionOfTheSeed) {
  testing::TempDir a, b, c;
  const std::vector<std::string> args{"--train", "20", "--val",        "5",
                                      "--test",  "5",  "--image-size", "24"};
  auto with_seed = [&](const std::string& seed) {
    auto v = args;
    v.insert(v.end(), {"--seed", seed});
    return v;
  };
  ASSERT_EQ(generate(a.path(), with_seed("7")).exit_code, 0);
  ASSERT_EQ(generate(b.path(), with_seed("7")).exit_code, 0);
  ASSERT_EQ(generate(c.path(), with_seed("8")).exit_code, 0);
  for (const char* f : {"/problems.json", "/pid_splits.json"}) {
    EXPECT_EQ(testing::read_text(a.path() + f), testing::read_text(b.path() + f)) << f;
  }
  EXPECT_NE(testing::read_text(a.path() + "/problems.json"),
            testing::read_text(c.path() + "/problems.json"));
  int compared = 0;
  for (const auto& entry : fs::recursive_directory_iterator(a.path() + "/images")) {
    if (!entry.is_regular_file()) continue;
    const std::string rel = fs::relative(entry.path(), a.path()).string();
    EXPECT_EQ(testing::read_text(entry.path().string()), testing::read_text(b.path() + "/" + rel))
        << rel;
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

TEST(SyntheticScienceQA, OrderedOptionsKeepTheProblemsAndSortTheChoices) {
  // --ordered-options (scripts/demo.sh): the same questions, pictures and answers, the options
  // sorted (numbers by value, words alphabetically)
  testing::TempDir shuffled, ordered;
  const std::vector<std::string> args{"--train", "40", "--val", "5", "--test", "5", "--image-size", "24"};
  ASSERT_EQ(generate(shuffled.path(), args).exit_code, 0);
  auto with_flag = args;
  with_flag.push_back("--ordered-options");
  ASSERT_EQ(generate(ordered.path(), with_flag).exit_code, 0);
  const auto a = read(shuffled.path(), "train").examples, b = read(ordered.path(), "train").examples;
  ASSERT_EQ(a.size(), b.size());
  auto value = [](const std::string& c) { return std::all_of(c.begin(), c.end(), ::isdigit) ? std::stoi(c) : -1; };
  int reordered = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    EXPECT_EQ(a[i].choices.at(static_cast<size_t>(a[i].answer_index)),
              b[i].choices.at(static_cast<size_t>(b[i].answer_index)))
        << a[i].id;
    EXPECT_EQ(std::multiset<std::string>(a[i].choices.begin(), a[i].choices.end()),
              std::multiset<std::string>(b[i].choices.begin(), b[i].choices.end()));
    for (size_t k = 1; k < b[i].choices.size(); ++k) {
      const std::string &x = b[i].choices[k - 1], &y = b[i].choices[k];
      EXPECT_TRUE(value(x) >= 0 && value(y) >= 0 ? value(x) < value(y) : x < y) << x << " before " << y;
    }
    reordered += a[i].choices != b[i].choices;
  }
  EXPECT_GT(reordered, 0);
  int compared = 0;  // the pictures are the same
  for (const auto& entry : fs::recursive_directory_iterator(shuffled.path() + "/images")) {
    if (!entry.is_regular_file()) continue;
    const std::string rel = fs::relative(entry.path(), shuffled.path()).string();
    EXPECT_EQ(testing::read_text(entry.path().string()), testing::read_text(ordered.path() + "/" + rel)) << rel;
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

TEST(SyntheticScienceQA, RejectsBadArguments) {
  testing::TempDir d;
  EXPECT_NE(generate(d.path(), {"--train", "-1"}).exit_code, 0);
  EXPECT_NE(generate(d.path(), {"--image-size", "8"}).exit_code, 0);
}

}  // namespace test_synthetic_scienceqa
}  // namespace mmtune::data
