// The eval task layer without a model: the registry, whole-batch sharding, the seeded fallback,
// answer extraction and metrics of the mcq and grounding tasks, their JSONL readers, and the
// prompts they build.
#include <gtest/gtest.h>

#include <set>

#include "test_utils.h"
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/eval/choice_score.h>
#include <mmtune/eval/grounding.h>
#include <mmtune/eval/task.h>

namespace mmtune::eval {
namespace test_eval_tasks {

TEST(EvalTasks, RegistryKnowsEveryConfigTaskAndRejectsOthersWithTheList) {
  for (const auto& name : eval_task_names()) EXPECT_EQ(make_eval_task(name)->name(), name);
  // the registry and the config's eval.task choices are the same set
  std::set<std::string> from_config;
  for (const auto& k : config::list_keys(adapters::builtin_adapters())) {
    if (k.path != "eval.task") continue;
    for (const auto& name : eval_task_names()) {
      if (k.type.find(name) != std::string::npos) from_config.insert(name);
    }
  }
  EXPECT_EQ(from_config.size(), eval_task_names().size());
  try {
    make_eval_task("scienceqaa");
    FAIL() << "no error for an unknown task";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown eval task 'scienceqaa'"), std::string::npos);
    EXPECT_NE(e.hint().find("did you mean scienceqa?"), std::string::npos) << e.hint();
    EXPECT_NE(e.hint().find("grounding"), std::string::npos) << e.hint();
  }
}

TEST(EvalTasks, RankBatchesGiveEveryBatchToExactlyOneRankWithTheSameComposition) {
  using Ranges = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(rank_batches(10, 4, 0, 1), (Ranges{{0, 4}, {4, 8}, {8, 10}}));
  EXPECT_EQ(rank_batches(10, 4, 0, 2), (Ranges{{0, 4}, {8, 10}}));
  EXPECT_EQ(rank_batches(10, 4, 1, 2), (Ranges{{4, 8}}));
  EXPECT_TRUE(rank_batches(3, 4, 1, 2).empty()) << "a rank may get nothing";
  EXPECT_TRUE(rank_batches(0, 4, 0, 1).empty());
  for (int world : {1, 2, 3, 5}) {
    std::set<std::pair<int64_t, int64_t>> all;
    for (int r = 0; r < world; ++r)
      for (const auto& b : rank_batches(37, 5, r, world)) EXPECT_TRUE(all.insert(b).second);
    const auto single = rank_batches(37, 5, 0, 1);
    const std::set<std::pair<int64_t, int64_t>> expected(single.begin(), single.end());
    EXPECT_EQ(all, expected) << "world " << world;
  }
  EXPECT_THROW(rank_batches(10, 0, 0, 1), Error);
  EXPECT_THROW(rank_batches(10, 4, 2, 2), Error);
}

TEST(EvalTasks, SeededChoiceDependsOnlyOnSeedAndKeyAndCoversTheOptions) {
  EXPECT_EQ(seeded_choice(1, "4217", 4), seeded_choice(1, "4217", 4));
  std::set<int64_t> seen;
  int differs = 0;
  for (int i = 0; i < 200; ++i) {
    const auto k = seeded_choice(0, std::to_string(i), 3);
    ASSERT_GE(k, 0);
    ASSERT_LT(k, 3);
    seen.insert(k);
    differs += k != seeded_choice(1, std::to_string(i), 3);
  }
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_GT(differs, 50) << "the seed matters";
  EXPECT_THROW(seeded_choice(0, "x", 0), Error);
}

TEST(EvalTasks, GatherRecordsInOneProcessReturnsThemInOrder) {
  EvalEnv env;
  EXPECT_EQ(gather_records(env, {"{\"a\":1}", "{\"b\":2}"}), (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
  EXPECT_TRUE(gather_records(env, {}).empty());
  EXPECT_THROW(gather_records(env, {"two\nlines"}), Error);
}

TEST(EvalTasks, SamplingSeedIsOffsetByTheBatchNotTheRank) {
  config::GenerationConfig g;
  g.seed = 7;
  g.max_new_tokens = 9;
  g.stop = {"###"};
  const auto o = sampling_options(g, 3);
  EXPECT_EQ(o.seed, 10u);
  EXPECT_EQ(o.max_new_tokens, 9);
  EXPECT_EQ(o.stop, std::vector<std::string>{"###"});
}

TEST(EvalTasks, YesNoAndOptionExtraction) {
  EXPECT_EQ(extract_yes_no("Yes, there is a dog."), "yes");
  EXPECT_EQ(extract_yes_no("no"), "no");
  EXPECT_EQ(extract_yes_no("There is none. No."), "no");
  EXPECT_EQ(extract_yes_no("Nope, yesterday"), "") << "whole words only";
  EXPECT_EQ(extract_yes_no(""), "");
  const std::vector<std::string> c{"red", "blue", "green"};
  EXPECT_EQ(extract_option("The answer is B. BECAUSE: ...", c), 1);
  EXPECT_EQ(extract_option("C", c), 2);
  EXPECT_EQ(extract_option(" (A) red", c), 0);
  EXPECT_EQ(extract_option("B.", c), 1);
  EXPECT_EQ(extract_option("Green.", c), 2) << "the choice's own text";
  EXPECT_EQ(extract_option("D", c), -1) << "out of range";
  EXPECT_EQ(extract_option("Blueish", c), -1);
  EXPECT_EQ(extract_option("A dog", c), 0) << "a leading letter alone counts";
  EXPECT_EQ(extract_option("An apple", c), -1);
}

TEST(EvalTasks, ChoiceScoresFollowPope) {
  auto yn = [](const std::string& a) {
    ChoiceItem i;
    i.answer = a;
    return i;
  };
  ChoiceItem mc;
  mc.choices = {"x", "y"};
  mc.answer = "B";
  // gt:   yes   yes   yes  no    no   no   | mc B
  // pred: yes   no    ""   yes   no   no   | B
  const std::vector<ChoiceItem> items{yn("yes"), yn("yes"), yn("yes"), yn("no"), yn("no"), yn("no"), mc};
  const auto s = score_choices(items, {"yes", "no", "", "yes", "no", "no", "B"});
  EXPECT_EQ(s.tp, 1);
  EXPECT_EQ(s.fn, 2) << "an unparsable answer to a yes question is a false negative";
  EXPECT_EQ(s.fp, 1);
  EXPECT_EQ(s.tn, 2);
  EXPECT_EQ(s.unparsable, 1);
  EXPECT_DOUBLE_EQ(s.accuracy(), 100.0 * 4 / 7);
  EXPECT_DOUBLE_EQ(s.yes_no_accuracy(), 50.0);
  EXPECT_DOUBLE_EQ(s.precision(), 50.0);
  EXPECT_DOUBLE_EQ(s.recall(), 100.0 / 3);
  EXPECT_DOUBLE_EQ(s.f1(), 2 * 50.0 * (100.0 / 3) / (50.0 + 100.0 / 3));
  EXPECT_DOUBLE_EQ(s.yes_ratio(), 100.0 * 2 / 6);
  EXPECT_DOUBLE_EQ(s.choice_accuracy(), 100.0);
  EXPECT_NE(format_choice_scores(s).find("precision 50.00"), std::string::npos) << format_choice_scores(s);
  EXPECT_THROW(score_choices(items, {}), Error);
}

TEST(EvalTasks, ChoiceJsonlReadsBothKindsAndNamesTheBadLine) {
  testing::TempDir d;
  d.write("a.png", "not checked here");
  const auto path = d.write("q.jsonl",
                            "{\"id\": \"q1\", \"image\": \"a.png\", \"question\": \"Dog?\", \"answer\": \"Yes\"}\n"
                            "\n"
                            "{\"id\": 7, \"question\": \"Colour?\", \"choices\": [\"red\", \"blue\"], \"answer\": 1}\n"
                            "{\"question\": \"Which?\", \"choices\": [\"a\", \"b\", \"c\"], \"answer\": \"c\"}\n");
  const auto items = read_choice_items(path, "", 0);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].answer, "yes");
  EXPECT_TRUE(items[0].yes_no());
  EXPECT_EQ(items[0].image, d.path() + "/a.png");
  EXPECT_EQ(items[1].id, "7");
  EXPECT_EQ(items[1].answer, "B");
  EXPECT_TRUE(items[1].image.empty());
  EXPECT_EQ(items[2].id, "4") << "the line number when there is no id";
  EXPECT_EQ(items[2].answer, "C");
  EXPECT_EQ(read_choice_items(path, "", 1).size(), 1u);

  auto error_of = [&](const std::string& text) {
    try {
      read_choice_items(d.write("bad.jsonl", text), "", 0);
    } catch (const DataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("{\"question\": \"q\", \"answer\": \"maybe\"}\n").find("line 1: the answer of a question without"),
            std::string::npos);
  EXPECT_NE(error_of("{\"question\": \"q\", \"answer\": \"yes\"}\n{oops\n").find("line 2 is not JSON"), std::string::npos);
  EXPECT_NE(error_of("{\"question\": \"q\", \"choices\": [\"a\"], \"answer\": \"B\"}\n").find("option letter"),
            std::string::npos);
  EXPECT_NE(error_of("{\"question\": \"q\", \"image\": \"missing.png\", \"answer\": \"no\"}\n").find("not found"),
            std::string::npos);
  EXPECT_NE(error_of("{\"answer\": \"no\"}\n").find("has no \"question\""), std::string::npos);
}

TEST(EvalTasks, BoxesParseAndIou) {
  EXPECT_EQ(parse_boxes("[0.1, 0.2, 0.5, 0.6]"), (std::vector<Box>{{0.1, 0.2, 0.5, 0.6}}));
  EXPECT_EQ(parse_boxes("It is at [0,0,1,1]; [0.25 ,0.25, 0.75,0.75]."),
            (std::vector<Box>{{0, 0, 1, 1}, {0.25, 0.25, 0.75, 0.75}}));
  EXPECT_TRUE(parse_boxes("[0.1, 0.2, 0.5]").empty());
  EXPECT_TRUE(parse_boxes("[a, b, c, d]").empty());
  EXPECT_TRUE(parse_boxes("no box [").empty());
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 1, 1}, {0, 0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 0.5, 1}, {0.25, 0, 0.75, 1}), 1.0 / 3);
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 0.1, 0.1}, {0.5, 0.5, 1, 1}), 0.0);
  EXPECT_DOUBLE_EQ(box_iou({0.5, 0.5, 0.2, 0.2}, {0, 0, 1, 1}), 0.0) << "inverted boxes are empty";
  // IoU is the same in pixels: x = n * side - border scales and shifts both boxes alike
  const Box a{0.1, 0.3, 0.6, 0.8}, b{0.2, 0.25, 0.7, 0.9};
  auto to_px = [](const Box& n) { return Box{n.x1 * 640, n.y1 * 640 - 80, n.x2 * 640, n.y2 * 640 - 80}; };
  EXPECT_NEAR(box_iou(a, b), box_iou(to_px(a), to_px(b)), 1e-12);  // double arithmetic on O(1) ratios
  EXPECT_EQ(format_box({0.1, 0.2, 0.5, 1}), "[0.10, 0.20, 0.50, 1.00]");
  EXPECT_EQ(parse_boxes(format_box(a, 3)), std::vector<Box>{a});
}

TEST(EvalTasks, GroundingJsonlChecksTheBox) {
  testing::TempDir d;
  d.write("i.png", "x");
  const auto good = d.write("g.jsonl", "{\"id\": \"r1\", \"image\": \"i.png\", \"expression\": \"the dog\", "
                                       "\"box\": [0.1, 0.2, 0.3, 0.4]}\n");
  const auto items = read_grounding_items(good, "", 0);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].box, (Box{0.1, 0.2, 0.3, 0.4}));
  EXPECT_EQ(grounding_query(items[0].expression),
            "Please provide the bounding box coordinate of the region this sentence describes: the dog");
  const auto bad = d.write("b.jsonl", "{\"image\": \"i.png\", \"expression\": \"x\", \"box\": [0.5, 0.2, 0.3, 1.4]}\n");
  EXPECT_THROW(read_grounding_items(bad, "", 0), DataError);
}

TEST(EvalTasks, QuestionPromptsFollowTheDataFormat) {
  EvalEnv env;
  env.cfg.data.format = "scienceqa";
  env.cfg.data.prompt_format = "QCM-ALE";
  const auto lavin = question_example(env, "1", "", "Is it red?", {"yes", "no"});
  EXPECT_EQ(lavin.prompt, "Question: Is it red?\nContext: N/A\nOptions: (A) yes (B) no\nResponse:");
  EXPECT_EQ(lavin.choices, (std::vector<std::string>{"yes", "no"}));
  EXPECT_EQ(question_example(env, "1", "", "Where?", {}).prompt, "Instruction: Where?\nResponse:");
  env.cfg.data.format = "llava_json";
  env.cfg.data.template_name = "plain";
  env.layout.image_placeholder = "<image>";
  const auto llava = question_example(env, "2", "/x.png", "Colour?", {"red", "blue"});
  EXPECT_EQ(llava.prompt,
            "<image>\nColour?\nA. red\nB. blue\nAnswer with the option's letter from the given choices directly.\n")
      << "the plain template ends a turn with a newline";
  EXPECT_EQ(llava.image_path, "/x.png");
  EXPECT_EQ(question_example(env, "3", "", "Hi?", {}).prompt, "Hi?\n") << "no placeholder without an image";
  env.cfg.data.template_name = "vicuna_v1";
  EXPECT_NE(question_example(env, "4", "", "Hi?", {}).prompt.find("USER: Hi? ASSISTANT:"), std::string::npos);
}

}  // namespace test_eval_tasks
}  // namespace mmtune::eval
