// LaVIN's ScienceQA prompt builder (spec §1.9; LaVIN util/base_prompt.py build_prompt, derived
// from lupantech/ScienceQA models/base_prompt.py) and the answer extraction of its eval (§1.12).
//
// A format name is "<input>-<output>", e.g. "QCM-ALE" (the default of every LaVIN script).
//   inputs   CQM    "Context: {c}\nQuestion: {q}\nOptions: {m}\n"
//            QCM    "Question: {q}\nContext: {c}\nOptions: {m}\n"
//            QCML / QCME / QCMLE   QCM + "BECAUSE: {l}\n" / "{e}" / "{l} {e}" after the options
//            QCLM / QCEM / QCLEM   the same BECAUSE line between the context and the options
//   outputs  A    "The answer is {X}."
//            AL   "The answer is {X}. BECAUSE: {e}"        (sic: AL uses the solution,
//            AE   "The answer is {X}. BECAUSE: {l}"         and AE the lecture, as upstream)
//            ALE  "The answer is {X}. BECAUSE: {l} {e}"     AEL  "... BECAUSE: {e} {l}"
//            LA   "{l} The answer is {X}."   EA  "{e} The answer is {X}."
//            LEA  "{l} {e} The answer is {X}."   ELA "{e} {l} The answer is {X}."
// with q the question, c the context, m the options, l the lecture, e the solution ("explanation"),
// X the answer's letter. Field rules:
//   context   hint + " " + caption (caption only with use_caption), stripped; "" becomes "N/A"
//   options   "(A) c0 (B) c1 ..." joined by single spaces (letters A-E upstream; here up to Z)
//   l, e      every "\n" replaced by the two characters backslash and n
// The prompt is "\n" + input + "Response:"; each of prompt and answer then gets upstream's
// clean-up: ONE left-to-right pass replacing "  " by " " (Python's str.replace, so three spaces
// become two) and Python's str.strip() (Unicode whitespace, which also drops the leading "\n").
// An answer whose lecture and solution are empty keeps its dangling "BECAUSE:" (upstream's check
// for it assigns to an unused variable). The training sample is prompt + answer, no separator.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mmtune::data {

enum class PromptInput { kCQM, kQCM, kQCML, kQCME, kQCMLE, kQCLM, kQCEM, kQCLEM };
enum class PromptOutput { kA, kAL, kAE, kALE, kAEL, kLA, kEA, kLEA, kELA };

/// An input-output pair such as QCM-ALE.
struct PromptFormat {
  PromptInput input = PromptInput::kQCM;
  PromptOutput output = PromptOutput::kALE;
  bool operator==(const PromptFormat&) const = default;
};

/// Parses "QCM-ALE" and the like (case-sensitive). Throws mmtune::ConfigError for the key
/// data.prompt_format, listing the valid inputs and outputs.
PromptFormat parse_prompt_format(std::string_view name);

/// "QCM-ALE" for {kQCM, kALE}.
std::string prompt_format_name(PromptFormat format);

/// Every format the builder supports (8 inputs x 9 outputs), input-major in the order above.
std::vector<std::string> prompt_format_names();

/// The fields of one multiple-choice problem that the builder reads, as problems.json has them.
struct ProblemText {
  std::string question;
  std::string hint;     // the text context; may be empty
  std::string caption;  // an image caption (captions.json); used only with use_caption
  std::vector<std::string> choices;
  int64_t answer_index = 0;  // into choices
  std::string lecture;
  std::string solution;
};

/// A built training pair: the model input (ends with "Response:") and the target text.
struct PromptPair {
  std::string prompt;
  std::string answer;
};

/// Builds LaVIN's prompt and answer for `problem` in `format` (see the file comment). Throws
/// mmtune::Error when there are no choices, more than 26, or answer_index is not one of them.
PromptPair build_prompt(const ProblemText& problem, PromptFormat format, bool use_caption = false);

/// The option letter of choice `index`: 'A' + index (index < 26).
char option_letter(int64_t index);

/// Python's str.strip() with no arguments on UTF-8 text: removes leading and trailing Unicode
/// whitespace (str.isspace: ASCII \t\n\v\f\r\x1c-\x1f and space, U+0085, U+00A0, U+1680,
/// U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
std::string python_strip(std::string_view text);

/// The letter of the first match of LaVIN's regex `The answer is ([A-Z]).` in `generated`
/// (Python re semantics: the final `.` is a wildcard for any character except "\n", and it must
/// be present), or nullopt when nothing matches.
std::optional<char> find_answer_letter(std::string_view generated);

/// The option index of find_answer_letter(generated), or -1 when nothing matches or the letter is
/// not among the first `n_choices` letters (upstream's eval then picks a random option; callers
/// decide, see eval.unparsable). Only the first match counts, as upstream.
int64_t extract_answer(std::string_view generated, int64_t n_choices);

}  // namespace mmtune::data
