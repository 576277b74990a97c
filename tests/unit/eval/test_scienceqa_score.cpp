// ScienceQA categories and scores on hand-made questions whose categories and counts are written
// out below.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/eval/scienceqa_score.h>

#include <nlohmann/json.hpp>

namespace mmtune::eval {
namespace test_scienceqa_score {

data::Example q(const std::string& id, const std::string& subject, const std::string& grade, const std::string& hint,
                bool image, int64_t answer) {
  data::Example e;
  e.id = id;
  e.meta = {{"subject", subject}, {"grade", grade}, {"hint", hint}};
  if (image) e.image_path = "images/test/" + id + "/image.png";
  e.answer_index = answer;
  e.choices = {"a", "b", "c"};
  return e;
}

TEST(ScienceQAScore, CategoriesFollowTheBenchmarkDefinitions) {
  EXPECT_EQ(scienceqa_categories_of(q("1", "natural science", "grade3", "", true, 0)),
            (std::vector<std::string>{"NAT", "IMG", "G1-6", "Avg"}));
  EXPECT_EQ(scienceqa_categories_of(q("2", "social science", "grade7", "a hint", true, 0)),
            (std::vector<std::string>{"SOC", "TXT", "IMG", "G7-12", "Avg"}));
  EXPECT_EQ(scienceqa_categories_of(q("3", "language science", "grade12", "", false, 0)),
            (std::vector<std::string>{"LAN", "NO", "G7-12", "Avg"}));
  EXPECT_EQ(scienceqa_categories_of(q("4", "language science", "grade6", "h", false, 0)),
            (std::vector<std::string>{"LAN", "TXT", "G1-6", "Avg"}));
}

TEST(ScienceQAScore, CountsEachQuestionInEveryCategoryItBelongsTo) {
  const std::vector<data::Example> ex{q("1", "natural science", "grade3", "", true, 0),
                                      q("2", "social science", "grade7", "a hint", true, 1),
                                      q("3", "language science", "grade12", "", false, 2),
                                      q("4", "language science", "grade6", "h", false, 0)};
  const std::vector<Prediction> pred{{"1", "The answer is A.", 0, true},
                                     {"2", "The answer is A.", 0, true},  // wrong
                                     {"3", "no idea", -1, false},          // unparsable = wrong
                                     {"4", "The answer is A.", 0, true}};
  const auto s = score_scienceqa(ex, pred);
  auto acc = [&](const std::string& k) { return std::pair{s.categories.at(k).correct, s.categories.at(k).count}; };
  EXPECT_EQ(acc("NAT"), (std::pair<int64_t, int64_t>{1, 1}));
  EXPECT_EQ(acc("SOC"), (std::pair<int64_t, int64_t>{0, 1}));
  EXPECT_EQ(acc("LAN"), (std::pair<int64_t, int64_t>{1, 2}));
  EXPECT_EQ(acc("TXT"), (std::pair<int64_t, int64_t>{1, 2}));
  EXPECT_EQ(acc("IMG"), (std::pair<int64_t, int64_t>{1, 2}));
  EXPECT_EQ(acc("NO"), (std::pair<int64_t, int64_t>{0, 1}));
  EXPECT_EQ(acc("G1-6"), (std::pair<int64_t, int64_t>{2, 2}));
  EXPECT_EQ(acc("G7-12"), (std::pair<int64_t, int64_t>{0, 2}));
  EXPECT_EQ(acc("Avg"), (std::pair<int64_t, int64_t>{2, 4}));
  EXPECT_EQ(s.unparsable, std::vector<std::string>{"3"});
  EXPECT_NE(format_scienceqa_table(s).find("50.00"), std::string::npos);

  const auto j = nlohmann::json::parse(scienceqa_results_json(s, pred, R"({"split": "test"})"));
  EXPECT_DOUBLE_EQ(j["acc"].get<double>(), 50.0);
  EXPECT_EQ(j["correct"], 2);
  EXPECT_EQ(j["count"], 4);
  EXPECT_EQ(j["results"]["3"], -1);
  EXPECT_EQ(j["outputs"]["2"], "The answer is A.");
  EXPECT_EQ(j["args"]["split"], "test");
  EXPECT_DOUBLE_EQ(j["categories"]["LAN"]["acc"].get<double>(), 50.0);
}

TEST(ScienceQAScore, AQuestionWithoutAPredictionIsAnError) {
  EXPECT_THROW(score_scienceqa({q("1", "natural science", "grade1", "", false, 0)}, {}), Error);
}

}  // namespace test_scienceqa_score
}  // namespace mmtune::eval
