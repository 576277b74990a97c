// LLaVA conversation JSON: the real ScienceQA file (4241 items, images absent here) in error and
// skip mode, placeholder placement, multi-turn, ids, limit, and malformed files.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/data/llava_json.h>

#include <filesystem>

#include "test_utils.h"

namespace mmtune::data {
namespace test_llava_json {

const std::string kSys =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, "
    "and polite answers to the user's questions.";

std::string real_file() {
  return std::string(testing::kSharedDir) + "/data/scienceqa/llava_test_CQM-A.json";
}

TEST(LlavaJson, RealScienceQaFileSkipsTheAbsentImagesAndCountsThem) {
  testing::TempDir empty;  // an image folder without the images
  LlavaJsonOptions o;
  o.json_path = real_file();
  o.image_folder = empty.path();
  o.chat_template = Template::kVicunaV1;
  o.skip_bad_samples = true;
  const LlavaJsonData d = read_llava_json(o);
  EXPECT_EQ(d.skipped, 2017);  // every item with an "image"
  EXPECT_EQ(d.examples.size(), 4241u - 2017u);
  EXPECT_EQ(d.skipped_ids.front(), "5");
  const Example& first = d.examples.front();
  EXPECT_EQ(first.id, "4");
  EXPECT_TRUE(first.image_path.empty());
  EXPECT_EQ(first.prompt.rfind(
                kSys + " USER: Which figure of speech is used in this text?\nSing, O goddess", 0),
            0u);
  EXPECT_TRUE(first.prompt.ends_with("A. chiasmus\nB. apostrophe ASSISTANT:")) << first.prompt;
  EXPECT_EQ(first.answer, " B");
}

TEST(LlavaJson, RealFileInErrorModeNamesTheSampleAndThePath) {
  testing::TempDir empty;
  LlavaJsonOptions o;
  o.json_path = real_file();
  o.image_folder = empty.path();
  try {
    read_llava_json(o);
    FAIL() << "absent images must fail in error mode";
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), empty.path() + "/5/image.png");
    EXPECT_NE(std::string(e.what()).find("sample '5'"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("on_bad_sample"), std::string::npos);
  }
}

TEST(LlavaJson, ImageSamplesGetThePlaceholderFirstAndTextSamplesStayAsTheyAre) {
  testing::TempDir d;
  d.write("imgs/a.png", "x");  // existence is checked here; decoding happens in collate
  d.write("imgs/b.png", "x");
  const std::string json = d.write("data.json", R"([
    {"id": "a", "image": "a.png", "conversations": [{"from": "human", "value": "What is this?\n<image>"},
                                                    {"from": "gpt", "value": "A dog."}]},
    {"id": 7, "image": "b.png", "conversations": [{"from": "human", "value": "No tag here."},
                                                  {"from": "gpt", "value": "OK"}]},
    {"id": "t", "conversations": [{"from": "human", "value": "Text <image> only"}, {"from": "gpt", "value": "Yes"}]}
  ])");
  LlavaJsonOptions o;
  o.json_path = json;
  o.image_folder = d.path() + "/imgs";
  o.chat_template = Template::kPlain;
  const LlavaJsonData r = read_llava_json(o);
  ASSERT_EQ(r.examples.size(), 3u);
  EXPECT_EQ(r.skipped, 0);
  EXPECT_EQ(r.examples[0].prompt, "<image>\nWhat is this?\n");
  EXPECT_EQ(r.examples[0].answer, "A dog.");
  EXPECT_EQ(r.examples[0].image_path, d.path() + "/imgs/a.png");
  EXPECT_EQ(r.examples[1].id, "7");  // numeric ids become strings
  EXPECT_EQ(r.examples[1].prompt, "<image>\nNo tag here.\n");
  EXPECT_EQ(r.examples[2].prompt, "Text <image> only\n");
  EXPECT_TRUE(r.examples[2].image_path.empty());
}

TEST(LlavaJson, AnImageNameTooLongForTheFileSystemIsAMissingImage) {
  // found by fuzz_llava_json: std::filesystem threw "File name too long" out of the reader
  testing::TempDir d;
  const std::string name(5000, 'a');
  const std::string json = d.write("data.json", R"([{"id": "a", "image": ")" + name + R"(",
    "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "A dog."}]}])");
  LlavaJsonOptions o;
  o.json_path = json;
  o.image_folder = d.path();
  o.chat_template = Template::kPlain;
  try {
    read_llava_json(o);
    FAIL() << "no error for a missing image";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("image of sample 'a' (entry 0 of " + json + ") not found"), std::string::npos)
        << e.what();
  }
  o.skip_bad_samples = true;
  const LlavaJsonData r = read_llava_json(o);
  EXPECT_EQ(r.examples.size(), 0u);
  EXPECT_EQ(r.skipped, 1);
}

TEST(LlavaJson, MultiTurnTrainsOnTheLastReplyAndLimitCutsTheFile) {
  testing::TempDir d;
  const std::string json = d.write("data.json", R"([
    {"id": "m", "conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                                  {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]},
    {"id": "g", "conversations": [{"from": "system", "value": "S"}, {"from": "user", "value": "q"}]},
    {"id": "late", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
  ])");
  LlavaJsonOptions o;
  o.json_path = json;
  o.chat_template = Template::kVicunaV1;
  o.limit = 2;
  const LlavaJsonData r = read_llava_json(o);
  ASSERT_EQ(r.examples.size(), 2u);
  EXPECT_EQ(r.examples[0].prompt, kSys + " USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT:");
  EXPECT_EQ(r.examples[0].answer, " a2");
  EXPECT_EQ(r.examples[1].prompt, "S USER: q ASSISTANT:");  // ends with a user turn: generation
  EXPECT_TRUE(r.examples[1].answer.empty());
}

TEST(LlavaJson, MalformedFilesAreErrorsEvenInSkipMode) {
  testing::TempDir d;
  const std::vector<std::pair<std::string, std::string>> bad{
      {"not json", "not valid JSON"},
      {R"({"id": "x"})", "not a list"},
      {R"([{"id": "x"}])", "conversations"},
      {R"([{"id": "x", "conversations": [{"from": "robot", "value": "hi"}]}])", "robot"},
      {R"([{"id": "x", "conversations": [{"from": "gpt", "value": "hi"}]}])", "out of order"},
      {R"([{"id": "x", "image": ["a.png", "b.png"], "conversations": [{"from": "human", "value": "hi"}]}])",
       "image"},
      {R"([{"id": "x", "conversations": [{"from": "human", "value": 3}]}])", "value"},
  };
  for (const auto& [text, words] : bad) {
    LlavaJsonOptions o;
    o.json_path = d.write("bad.json", text);
    o.skip_bad_samples = true;
    try {
      read_llava_json(o);
      FAIL() << text;
    } catch (const DataError& e) {
      EXPECT_EQ(e.path(), o.json_path);
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_FALSE(e.hint().empty()) << text;
    }
  }
  LlavaJsonOptions missing;
  missing.json_path = d.path() + "/nope.json";
  EXPECT_THROW(read_llava_json(missing), DataError);
}

TEST(LlavaJson, OptionsComeFromTheConfig) {
  config::DataConfig data;
  data.json = "x.json";
  data.image_folder = "imgs";
  data.template_name = "llama3_instruct";
  data.on_bad_sample = "skip";
  data.limit = 9;
  SequenceLayout layout;
  layout.image_placeholder = "<img>";
  const LlavaJsonOptions o = llava_json_options(data, layout);
  EXPECT_EQ(o.json_path, "x.json");
  EXPECT_EQ(o.image_folder, "imgs");
  EXPECT_EQ(o.chat_template, Template::kLlama3Instruct);
  EXPECT_TRUE(o.skip_bad_samples);
  EXPECT_EQ(o.limit, 9);
  EXPECT_EQ(o.image_placeholder, "<img>");
}

}  // namespace test_llava_json
}  // namespace mmtune::data
