#include <mmtune/core/strings.h>
#include <mmtune/generate/chat.h>

namespace mmtune::generate {
ChatCommand parse_chat_line(std::string_view line) {
  const std::string text = trim(line);
  if (text.empty()) return {ChatCommand::Kind::kEmpty, ""};
  if (text[0] != '/') return {ChatCommand::Kind::kMessage, text};
  if (text.size() > 1 && text[1] == '/') return {ChatCommand::Kind::kMessage, text.substr(1)};
  const size_t sp = text.find_first_of(kWhitespace);
  const std::string word = text.substr(0, sp);
  const std::string arg = sp == std::string::npos ? "" : trim(std::string_view(text).substr(sp));
  using K = ChatCommand::Kind;
  if (word == "/image") return {K::kImage, arg};
  if (word == "/clear") return {K::kClear, arg};
  if (word == "/workflow") return {K::kWorkflow, arg};
  if (word == "/help" || word == "/?") return {K::kHelp, arg};
  if (word == "/quit" || word == "/exit") return {K::kQuit, arg};
  return {K::kUnknown, word};
}

std::string chat_help() {
  return "Type a message and press Enter. Commands:\n"
         "  /image PATH      show the model a picture with the next message (a new picture starts "
         "a new conversation)\n"
         "  /clear           forget the conversation and the picture\n"
         "  /workflow [NAME] IAA: answer through workflow NAME (auto: text without a picture); no "
         "NAME lists them\n"
         "  /help            this text\n"
         "  /quit            leave (also Ctrl-D)\n"
         "Ctrl-C stops the current answer. A message starting with '/' is written '//...'.\n"
         "Piped input (not a terminal): one message per line in, one answer per line out, with\n"
         "newlines written as \\n (and a backslash as \\\\) both ways; notes and errors go to "
         "stderr.\n";
}

std::string escape_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out;
}

std::string unescape_line(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (size_t i = 0; i < line.size(); ++i) {
    const char next = i + 1 < line.size() ? line[i + 1] : '\0';
    if (line[i] == '\\' && (next == 'n' || next == 'r' || next == '\\')) {
      out += next == 'n' ? '\n' : next == 'r' ? '\r' : '\\';
      ++i;
    } else {
      out += line[i];
    }
  }
  return out;
}

}  // namespace mmtune::generate
