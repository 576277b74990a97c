// The conversation without a model: the history rendered through a template, the image placeholder
// per layout, trimming to the context budget, and the stream filter.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/data/collate.h>
#include <mmtune/runtime/conversation.h>

#include <algorithm>

#include "test_utils.h"

namespace mmtune::runtime {
namespace test_conversation {

const text::Tokenizer& tok() {
  static const auto t = text::load_tokenizer(std::string(testing::kTinyDir) + "/llama-gqa");
  return *t;
}

data::SequenceLayout lavin_layout() {
  return {6, "Image: ", "Image: N/A", "<image>"};
}
data::SequenceLayout llava_layout() {
  return {16, "", "", "<image>"};
}

ChatOptions options(data::Template t, data::SequenceLayout layout, int64_t budget = 500) {
  ChatOptions o;
  o.templ = t;
  o.layout = std::move(layout);
  o.max_prompt_tokens = budget;
  return o;
}

TEST(ChatSession, RendersTheHistoryThroughTheTemplate) {
  ChatSession s(tok(), options(data::Template::kPlain, lavin_layout()));
  ChatTurn t = s.prepare("hello");
  EXPECT_EQ(t.example.prompt, "hello\n");
  EXPECT_TRUE(t.example.answer.empty());
  EXPECT_TRUE(t.example.image_path.empty());  // text-only: the text path
  EXPECT_EQ(t.dropped, 0);
  EXPECT_EQ(t.tokens, data::sequence_length(t.example, tok(), lavin_layout()));
  s.commit("hello", "  hi there \n");  // kept trimmed
  t = s.prepare("and now?");
  EXPECT_EQ(t.example.prompt, "hello\nhi there\nand now?\n");
  EXPECT_NE(t.example.id, "");

  ChatOptions o = options(data::Template::kVicunaV1, llava_layout());
  o.system = "Be brief.";
  ChatSession v(tok(), o);
  v.commit("Hi", "Hello!");
  EXPECT_EQ(v.prepare("Name a colour.").example.prompt,
            "Be brief. USER: Hi ASSISTANT: Hello!</s>USER: Name a colour. ASSISTANT:");
}

TEST(ChatSession, LlavaLayoutPutsThePlaceholderInTheImagesTurn) {
  ChatSession s(tok(), options(data::Template::kVicunaV1, llava_layout()));
  s.commit("Hi", "Hello!");
  EXPECT_FALSE(s.set_image("/pics/cat.png"));  // nothing shown yet: the history stays
  EXPECT_EQ(s.exchanges(), 1);
  const ChatTurn t = s.prepare("What is it?");
  EXPECT_EQ(t.example.image_path, "/pics/cat.png");
  EXPECT_NE(
      t.example.prompt.find("USER: Hi ASSISTANT: Hello!</s>USER: <image>\nWhat is it? ASSISTANT:"),
      std::string::npos)
      << t.example.prompt;
  s.commit("What is it?", "A cat.");
  const std::string next = s.prepare("Its colour?").example.prompt;
  EXPECT_NE(
      next.find("USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: Its colour? ASSISTANT:"),
      std::string::npos)
      << next;
  // the collated sample has the slots where the placeholder was
  const data::EncodedSample e =
      data::encode_sample(s.prepare("x").example, tok(), llava_layout(), 500);
  EXPECT_EQ(std::count(e.slots.begin(), e.slots.end(), 1), 16);
}

TEST(ChatSession, LavinLayoutLeavesTheImageToThePrefix) {
  ChatSession s(tok(), options(data::Template::kPlain, lavin_layout()));
  s.set_image("/pics/cat.png");
  const ChatTurn t = s.prepare("What is it?");
  EXPECT_EQ(t.example.prompt, "What is it?\n");
  EXPECT_EQ(t.example.image_path, "/pics/cat.png");
}

TEST(ChatSession, LlavaDataPutsThePlaceholderFirstWhateverTheLayout) {
  // MMA tuned on LLaVA conversations: the llava_json reader led the turn with "<image>\n", so the
  // slots come first and LaVIN's "Image: " prefix is not used
  ChatOptions o = options(data::Template::kPlain, lavin_layout());
  o.llava_data = true;
  ChatSession s(tok(), o);
  s.set_image("/pics/cat.png");
  const ChatTurn t = s.prepare("What is it?");
  EXPECT_EQ(t.example.prompt, "<image>\nWhat is it?\n");
  const data::EncodedSample e = data::encode_sample(t.example, tok(), lavin_layout(), 500);
  const int64_t first_slot = std::find(e.slots.begin(), e.slots.end(), 1) - e.slots.begin();
  EXPECT_EQ(first_slot, tok().bos_id() >= 0 ? 1 : 0);  // right after BOS: no prefix text
  EXPECT_EQ(std::count(e.slots.begin(), e.slots.end(), 1), 6);
  ChatSession text(tok(), o);  // no picture: the text-only prefix, as before
  EXPECT_EQ(text.prepare("hello").example.prompt, "hello\n");
}

TEST(ChatSession, ANewImageAfterOneWasShownStartsANewConversation) {
  ChatSession s(tok(), options(data::Template::kPlain, lavin_layout()));
  s.set_image("a.png");
  EXPECT_FALSE(s.set_image("b.png"));  // a.png was never shown: replaced
  s.prepare("q");
  s.commit("q", "a");
  EXPECT_TRUE(s.set_image("c.png"));
  EXPECT_EQ(s.exchanges(), 0);
  EXPECT_EQ(s.image(), "c.png");
  s.clear();
  EXPECT_FALSE(s.has_image());
  EXPECT_EQ(s.prepare("q").example.prompt, "q\n");
}

TEST(ChatSession, DropsTheOldestExchangesToFitTheBudget) {
  const std::string m1 = "the first question is about the weather in the north",
                    a1 = "it is cold and grey in the north of the map",
                    m2 = "the second question asks which planet is red",
                    a2 = "the red one is the fourth planet from the sun",
                    m3 = "now the third question", a3 = "and the third answer";
  const std::string msg = "what was the second question?";
  // the prompt of exchanges 2 and 3 plus the message, from a session that never had exchange 1
  ChatSession ref(tok(), options(data::Template::kVicunaV1, llava_layout()));
  ref.set_image("cat.png");
  ref.commit(m2, a2);
  ref.commit(m3, a3);
  const ChatTurn want = ref.prepare(msg);

  ChatSession s(tok(), options(data::Template::kVicunaV1, llava_layout(), want.tokens));
  s.set_image("cat.png");  // comes with m1; moves to m2 when m1 goes
  s.commit(m1, a1);
  s.commit(m2, a2);
  s.commit(m3, a3);
  const ChatTurn got = s.prepare(msg);
  EXPECT_EQ(got.dropped, 1);
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_EQ(got.example.prompt, want.example.prompt);
  EXPECT_EQ(got.example.prompt.find(m1), std::string::npos);
  EXPECT_NE(got.example.prompt.find("<image>\n" + m2), std::string::npos) << got.example.prompt;
  EXPECT_EQ(s.exchanges(), 2);  // gone for good
  EXPECT_EQ(s.prepare(msg).dropped, 0);
}

TEST(ChatSession, AMessageTooLongForTheContextIsAnErrorAndKeepsTheHistory) {
  ChatSession s(tok(), options(data::Template::kPlain, lavin_layout(), 12));
  s.commit("hi", "ho");
  std::string long_msg;
  for (int i = 0; i < 20; ++i) long_msg += "word ";
  try {
    s.prepare(long_msg);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("more than the 12"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.exchanges(), 1);
  EXPECT_THROW(ChatSession(tok(), options(data::Template::kPlain, lavin_layout(), 0)), UsageError);
}

TEST(ChatStops, EachTemplateEndsItsTurnsWithItsOwnStops) {
  EXPECT_EQ(template_stops(data::Template::kPlain), std::vector<std::string>{});
  EXPECT_EQ(template_stops(data::Template::kVicunaV1), (std::vector<std::string>{"</s>", "USER:"}));
}

TEST(StreamFilter, HoldsBackStopStringsAndSurroundingSpace) {
  StreamFilter f({"USER:", "</s>"});
  std::string shown;
  for (const char* p :
       {"  ", " The", " cat", " US", "A", " is", " ", "here.", " US", "ER:", " more"})
    shown += f.push(p);
  EXPECT_EQ(shown,
            "The cat USA is here.");  // "US" shown once "A" proved it no stop; trailing " " held
  EXPECT_EQ(f.text(), "The cat USA is here.");
  EXPECT_EQ(f.finish(), "");

  StreamFilter g({"</s>"});
  shown = g.push("\nHello");
  shown += g.push(" <");
  shown += g.push("/");
  EXPECT_EQ(shown, "Hello");
  shown +=
      g.finish();  // the answer ended (Ctrl-C, length) with a partial stop: it was text after all
  EXPECT_EQ(shown, "Hello </");
  EXPECT_EQ(g.text(), "Hello </");

  StreamFilter none({});
  EXPECT_EQ(none.push("a\nb"), "a\nb");
  EXPECT_EQ(none.push("\n"), "");
  EXPECT_EQ(none.finish(), "");
}

}  // namespace test_conversation
}  // namespace mmtune::runtime
