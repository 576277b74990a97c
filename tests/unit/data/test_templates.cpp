// Conversation templates: the exact strings of LLaVA's vicuna_v1 and Llama-3 instruct (written out
// by hand from their definitions), plain, multi-turn, generation prompts and order errors.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/data/templates.h>

namespace mmtune::data {
namespace test_templates {

const std::string kSys =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, "
    "and polite answers to the user's questions.";

std::vector<Turn> qa(const std::string& q, const std::string& a) {
  return {{Role::kUser, q}, {Role::kAssistant, a}};
}

TEST(Template, VicunaV1SingleTurnIsLlavasString) {
  const Rendered r = render(Template::kVicunaV1, qa("<image>\nWhat is it?", "A cat."));
  EXPECT_EQ(r.prompt, kSys + " USER: <image>\nWhat is it? ASSISTANT:");
  EXPECT_EQ(r.answer, " A cat.");
  // LLaVA's conv_vicuna_v1.get_prompt() of the same turns, minus the final "</s>" (collate's EOS)
  EXPECT_EQ(r.prompt + r.answer, kSys + " USER: <image>\nWhat is it? ASSISTANT: A cat.");
}

TEST(Template, VicunaV1MultiTurnPutsEarlierRepliesInThePrompt) {
  std::vector<Turn> t = qa("Hi", "Hello!");
  t.push_back({Role::kUser, "Name a colour."});
  t.push_back({Role::kAssistant, "Blue."});
  const Rendered r = render(Template::kVicunaV1, t);
  EXPECT_EQ(r.prompt, kSys + " USER: Hi ASSISTANT: Hello!</s>USER: Name a colour. ASSISTANT:");
  EXPECT_EQ(r.answer, " Blue.");
}

TEST(Template, GenerationPromptEqualsTheTrainingPrompt) {
  // a conversation ending with a user turn renders what the model sees before the reply
  for (Template t : {Template::kPlain, Template::kVicunaV1, Template::kLlama3Instruct}) {
    const Rendered train = render(t, qa("Question?", "Answer"));
    const Rendered gen = render(t, {{Role::kUser, "Question?"}});
    EXPECT_EQ(gen.prompt, train.prompt) << static_cast<int>(t);
    EXPECT_TRUE(gen.answer.empty());
    EXPECT_FALSE(train.answer.empty());
  }
}

TEST(Template, Llama3InstructIsTheChatTemplateWithoutBos) {
  const Rendered r = render(Template::kLlama3Instruct, qa("  What is 2+2?\n", " 4 "));
  EXPECT_EQ(r.prompt,
            "<|start_header_id|>system<|end_header_id|>\n\n" + kSys +
                "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(r.answer, "4");  // contents are trimmed, as the template's `| trim` does
  EXPECT_EQ(r.prompt.find("<|begin_of_text|>"), std::string::npos);  // collate adds BOS
}

TEST(Template, Llama3MultiTurnAndOwnSystem) {
  std::vector<Turn> t{{Role::kSystem, "Be brief."},
                      {Role::kUser, "a"},
                      {Role::kAssistant, "b"},
                      {Role::kUser, "c"},
                      {Role::kAssistant, "d"}};
  const Rendered r = render(Template::kLlama3Instruct, t);
  EXPECT_EQ(r.prompt,
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\na<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nb<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nc<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(r.answer, "d");
}

TEST(Template, VicunaUsesTheConversationsSystemTurn) {
  std::vector<Turn> t{{Role::kSystem, "SYS"}, {Role::kUser, "q"}, {Role::kAssistant, "a"}};
  EXPECT_EQ(render(Template::kVicunaV1, t).prompt, "SYS USER: q ASSISTANT:");
}

TEST(Template, PlainJoinsTurnsWithNewlines) {
  Rendered r = render(Template::kPlain, qa("Question: x\nOptions: (A) y", "The answer is A."));
  EXPECT_EQ(r.prompt, "Question: x\nOptions: (A) y\n");
  EXPECT_EQ(r.answer, "The answer is A.");
  std::vector<Turn> t = qa("q1", "a1");
  t.push_back({Role::kUser, "q2"});
  t.push_back({Role::kAssistant, "a2"});
  r = render(Template::kPlain, t);
  EXPECT_EQ(r.prompt, "q1\na1\nq2\n");
  EXPECT_EQ(r.answer, "a2");
  EXPECT_EQ(default_system(Template::kPlain), "");
  EXPECT_EQ(default_system(Template::kVicunaV1), kSys);
}

TEST(Template, BadTurnOrdersAreErrors) {
  EXPECT_THROW(render(Template::kVicunaV1, {}), Error);
  EXPECT_THROW(render(Template::kVicunaV1, {{Role::kSystem, "s"}}), Error);
  EXPECT_THROW(render(Template::kVicunaV1, {{Role::kAssistant, "a"}}), Error);
  EXPECT_THROW(render(Template::kPlain, {{Role::kUser, "a"}, {Role::kUser, "b"}}), Error);
  EXPECT_THROW(
      render(Template::kPlain, {{Role::kUser, "a"}, {Role::kAssistant, "b"}, {Role::kSystem, "c"}}),
      Error);
}

TEST(Template, NamesParse) {
  EXPECT_EQ(parse_template("plain"), Template::kPlain);
  EXPECT_EQ(parse_template("vicuna_v1"), Template::kVicunaV1);
  EXPECT_EQ(parse_template("llama3_instruct"), Template::kLlama3Instruct);
  try {
    parse_template("chatml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.hint().find("vicuna_v1"), std::string::npos);
  }
}

}  // namespace test_templates
}  // namespace mmtune::data
