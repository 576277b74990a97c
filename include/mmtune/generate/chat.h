// The REPL of `mmtune chat`: its command syntax and the one-line form of scripted input and
// output. The conversation itself (history, template, trimming to the context, the stream filter)
// is runtime::ChatSession (runtime/conversation.h), which the server uses too.
#pragma once

#include <string>
#include <string_view>

namespace mmtune::generate {

/// One input line of the REPL.
struct ChatCommand {
  enum class Kind { kEmpty, kMessage, kImage, kClear, kWorkflow, kHelp, kQuit, kUnknown };
  Kind kind = Kind::kEmpty;
  std::string arg;  // kMessage: the text; kImage: the path; kWorkflow: the name (may be empty);
                    // kUnknown: the command word
};

/// Parses one line: "/image PATH", "/clear", "/workflow [NAME]", "/help", "/quit" (or "/exit"),
/// any other "/word" is kUnknown; "//text" is the message "/text"; everything else (trimmed of
/// surrounding whitespace and a trailing '\r') is a message; a blank line is kEmpty.
ChatCommand parse_chat_line(std::string_view line);

/// The /help text (several lines, ends with '\n').
std::string chat_help();

/// `text` on one line: '\\' -> "\\\\", '\n' -> "\\n", '\r' -> "\\r" (scripted mode prints one
/// answer per line).
std::string escape_line(std::string_view text);
/// The inverse of escape_line, for scripted input (one message per line, so a multi-line message
/// such as a question with its options writes its newlines as "\\n"): "\\n" -> '\n', "\\r" -> '\r',
/// "\\\\" -> '\\'; any other backslash stays as it is.
std::string unescape_line(std::string_view line);

}  // namespace mmtune::generate
