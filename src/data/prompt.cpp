// LaVIN's ScienceQA prompt formats and answer extraction (see prompt.h).
#include <array>
#include <utility>

#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/prompt.h>

namespace mmtune::data {
namespace {

constexpr std::array<std::pair<PromptInput, std::string_view>, 8> kInputs{{
    {PromptInput::kCQM, "CQM"},
    {PromptInput::kQCM, "QCM"},
    {PromptInput::kQCML, "QCML"},
    {PromptInput::kQCME, "QCME"},
    {PromptInput::kQCMLE, "QCMLE"},
    {PromptInput::kQCLM, "QCLM"},
    {PromptInput::kQCEM, "QCEM"},
    {PromptInput::kQCLEM, "QCLEM"},
}};

constexpr std::array<std::pair<PromptOutput, std::string_view>, 9> kOutputs{{
    {PromptOutput::kA, "A"},
    {PromptOutput::kAL, "AL"},
    {PromptOutput::kAE, "AE"},
    {PromptOutput::kALE, "ALE"},
    {PromptOutput::kAEL, "AEL"},
    {PromptOutput::kLA, "LA"},
    {PromptOutput::kEA, "EA"},
    {PromptOutput::kLEA, "LEA"},
    {PromptOutput::kELA, "ELA"},
}};

template <class Table>
std::string names_of(const Table& table) {
  std::string s;
  for (const auto& [value, name] : table) s += (s.empty() ? "" : " | ") + std::string(name);
  return s;
}

// Decodes the UTF-8 code point starting at s[i]; returns it and its length in `len`. A malformed
// byte decodes as U+FFFD (length 1), which is not whitespace.
char32_t decode_at(std::string_view s, size_t i, size_t& len) {
  const auto b = static_cast<unsigned char>(s[i]);
  const size_t n = b < 0x80           ? 1
                   : (b >> 5) == 0x6  ? 2
                   : (b >> 4) == 0xE  ? 3
                   : (b >> 3) == 0x1E ? 4
                                      : 0;
  if (n == 0 || i + n > s.size()) {
    len = 1;
    return 0xFFFD;
  }
  char32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  len = n;
  return cp;
}

// Python's str.isspace() for one code point.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Python's str.replace("  ", " "): one non-overlapping left-to-right pass.
std::string replace_double_spaces(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    out += s[i];
    if (s[i] == ' ' && i + 1 < s.size() && s[i + 1] == ' ') ++i;
  }
  return out;
}

std::string clean(std::string_view s) {
  return python_strip(replace_double_spaces(s));
}

std::string escape_newlines(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    if (ch == '\n') {
      out += "\\n";
    } else {
      out += ch;
    }
  }
  return out;
}

std::string options_text(const std::vector<std::string>& choices) {
  std::string s;
  for (size_t i = 0; i < choices.size(); ++i) {
    s += cat(i ? " " : "", "(", option_letter(static_cast<int64_t>(i)), ") ", choices[i]);
  }
  return s;
}

struct Fields {
  std::string question, context, options, letter, lecture, solution;
};

std::string input_text(PromptInput in, const Fields& f) {
  const std::string q = "Question: " + f.question + "\n";
  const std::string c = "Context: " + f.context + "\n";
  const std::string m = "Options: " + f.options + "\n";
  switch (in) {
    case PromptInput::kCQM:
      return c + q + m;
    case PromptInput::kQCM:
      return q + c + m;
    case PromptInput::kQCML:
      return q + c + m + "BECAUSE: " + f.lecture + "\n";
    case PromptInput::kQCME:
      return q + c + m + "BECAUSE: " + f.solution + "\n";
    case PromptInput::kQCMLE:
      return q + c + m + "BECAUSE: " + f.lecture + " " + f.solution + "\n";
    case PromptInput::kQCLM:
      return q + c + "BECAUSE: " + f.lecture + "\n" + m;
    case PromptInput::kQCEM:
      return q + c + "BECAUSE: " + f.solution + "\n" + m;
    case PromptInput::kQCLEM:
      return q + c + "BECAUSE: " + f.lecture + " " + f.solution + "\n" + m;
  }
  throw Error("unhandled prompt input format");
}

std::string output_text(PromptOutput out, const Fields& f) {
  const std::string a = "The answer is " + f.letter + ".";
  const std::string& l = f.lecture;
  const std::string& e = f.solution;
  switch (out) {
    case PromptOutput::kA:
      return a;
    case PromptOutput::kAL:
      return a + " BECAUSE: " + e;  // upstream swaps L and E here ...
    case PromptOutput::kAE:
      return a + " BECAUSE: " + l;  // ... and here
    case PromptOutput::kALE:
      return a + " BECAUSE: " + l + " " + e;
    case PromptOutput::kAEL:
      return a + " BECAUSE: " + e + " " + l;
    case PromptOutput::kLA:
      return l + " " + a;
    case PromptOutput::kEA:
      return e + " " + a;
    case PromptOutput::kLEA:
      return l + " " + e + " " + a;
    case PromptOutput::kELA:
      return e + " " + l + " " + a;
  }
  throw Error("unhandled prompt output format");
}

}  // namespace

PromptFormat parse_prompt_format(std::string_view name) {
  const size_t dash = name.find('-');
  std::optional<PromptInput> in;
  std::optional<PromptOutput> out;
  if (dash != std::string_view::npos) {
    for (const auto& [value, n] : kInputs)
      if (n == name.substr(0, dash)) in = value;
    for (const auto& [value, n] : kOutputs)
      if (n == name.substr(dash + 1)) out = value;
  }
  if (!in || !out) {
    throw ConfigError({{"", "data.prompt_format", cat("unknown prompt format '", name, "'"),
                        cat("<input>-<output>, e.g. QCM-ALE; inputs: ", names_of(kInputs),
                            "; outputs: ", names_of(kOutputs))}});
  }
  return {*in, *out};
}

std::string prompt_format_name(PromptFormat format) {
  std::string s;
  for (const auto& [value, n] : kInputs)
    if (value == format.input) s = std::string(n);
  for (const auto& [value, n] : kOutputs)
    if (value == format.output) s += "-" + std::string(n);
  return s;
}

std::vector<std::string> prompt_format_names() {
  std::vector<std::string> names;
  for (const auto& [vi, in] : kInputs)
    for (const auto& [vo, out] : kOutputs)
      names.push_back(std::string(in) + "-" + std::string(out));
  return names;
}

char option_letter(int64_t index) {
  if (index < 0 || index >= 26)
    throw Error(cat("no option letter for choice ", index), "at most 26 choices (A-Z)");
  return static_cast<char>('A' + index);
}

PromptPair build_prompt(const ProblemText& p, PromptFormat format, bool use_caption) {
  if (p.choices.empty())
    throw Error("the problem has no choices", "a multiple-choice problem needs options");
  if (p.choices.size() > 26) {
    throw Error(cat("the problem has ", p.choices.size(), " choices"), "at most 26 (letters A-Z)");
  }
  if (p.answer_index < 0 || p.answer_index >= static_cast<int64_t>(p.choices.size())) {
    throw Error(
        cat("answer index ", p.answer_index, " is not one of the ", p.choices.size(), " choices"),
        "\"answer\" is the 0-based index of the right choice");
  }
  Fields f;
  f.question = p.question;
  f.context = python_strip(p.hint + " " + (use_caption ? p.caption : std::string()));
  if (f.context.empty()) f.context = "N/A";
  f.options = options_text(p.choices);
  f.letter = std::string(1, option_letter(p.answer_index));
  f.lecture = escape_newlines(p.lecture);
  f.solution = escape_newlines(p.solution);
  return {clean("\n" + input_text(format.input, f) + "Response:"),
          clean(output_text(format.output, f))};
}

std::string python_strip(std::string_view s) {
  size_t begin = 0, len = 0;
  while (begin < s.size() && is_python_space(decode_at(s, begin, len))) begin += len;
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;  // back to the lead byte of the last code point
    while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 &&
           end - start < 4)
      --start;
    const char32_t c = decode_at(s, start, len);
    if (start + len != end || !is_python_space(c)) break;
    end = start;
  }
  return std::string(s.substr(begin, end - begin));
}

std::optional<char> find_answer_letter(std::string_view text) {
  constexpr std::string_view kLead = "The answer is ";
  for (size_t p = text.find(kLead); p != std::string_view::npos; p = text.find(kLead, p + 1)) {
    const size_t at = p + kLead.size();
    // [A-Z] then one more character that is not a newline (the regex's unescaped '.')
    if (at + 1 < text.size() && text[at] >= 'A' && text[at] <= 'Z' && text[at + 1] != '\n')
      return text[at];
  }
  return std::nullopt;
}

int64_t extract_answer(std::string_view text, int64_t n_choices) {
  const std::optional<char> letter = find_answer_letter(text);
  if (!letter) return -1;
  const int64_t index = *letter - 'A';
  return index < n_choices ? index : -1;
}

}  // namespace mmtune::data
