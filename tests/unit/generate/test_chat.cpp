// The chat REPL without a model: command parsing and the one-line form of scripted input and output.
#include <gtest/gtest.h>

#include <mmtune/generate/chat.h>

namespace mmtune::generate {
namespace test_chat {

using K = ChatCommand::Kind;

TEST(ChatCommands, ParsesEveryCommandAndItsArgument) {
  EXPECT_EQ(parse_chat_line("").kind, K::kEmpty);
  EXPECT_EQ(parse_chat_line("  \r").kind, K::kEmpty);
  const ChatCommand msg = parse_chat_line("  What is in the picture?\r");
  EXPECT_EQ(msg.kind, K::kMessage);
  EXPECT_EQ(msg.arg, "What is in the picture?");
  const ChatCommand img = parse_chat_line("/image   /tmp/my cat.png  ");
  EXPECT_EQ(img.kind, K::kImage);
  EXPECT_EQ(img.arg, "/tmp/my cat.png");
  EXPECT_EQ(parse_chat_line("/image").kind, K::kImage);
  EXPECT_EQ(parse_chat_line("/image").arg, "");
  EXPECT_EQ(parse_chat_line("/clear").kind, K::kClear);
  const ChatCommand wf = parse_chat_line("/workflow mm");
  EXPECT_EQ(wf.kind, K::kWorkflow);
  EXPECT_EQ(wf.arg, "mm");
  EXPECT_EQ(parse_chat_line("/workflow").arg, "");
  EXPECT_EQ(parse_chat_line("/help").kind, K::kHelp);
  EXPECT_EQ(parse_chat_line("/quit").kind, K::kQuit);
  EXPECT_EQ(parse_chat_line("/exit").kind, K::kQuit);
  const ChatCommand unknown = parse_chat_line("/imgae x.png");
  EXPECT_EQ(unknown.kind, K::kUnknown);
  EXPECT_EQ(unknown.arg, "/imgae");
  const ChatCommand slash = parse_chat_line("//usr/bin is a folder");
  EXPECT_EQ(slash.kind, K::kMessage);
  EXPECT_EQ(slash.arg, "/usr/bin is a folder");
}

TEST(ChatCommands, HelpNamesEveryCommand) {
  const std::string h = chat_help();
  for (const char* c : {"/image", "/clear", "/workflow", "/help", "/quit", "Ctrl-C"})
    EXPECT_NE(h.find(c), std::string::npos) << c;
}

TEST(ChatOutput, EscapesAnAnswerOntoOneLine) {
  EXPECT_EQ(escape_line("a\nb\\c\r"), "a\\nb\\\\c\\r");
  EXPECT_EQ(escape_line("plain"), "plain");
  // scripted input uses the same escapes: unescape_line undoes escape_line
  for (const char* s : {"a\nb\\c\r", "Q?\nA. red\nB. blue", "\\n is not a newline", "end\\", ""})
    EXPECT_EQ(unescape_line(escape_line(s)), s) << s;
  EXPECT_EQ(unescape_line("C:\\temp\\x \\t"), "C:\\temp\\x \\t");  // other backslashes stay
  EXPECT_EQ(unescape_line("trailing \\"), "trailing \\");
}

}  // namespace test_chat
}  // namespace mmtune::generate
