// Generic multiple-choice and yes/no questions (`mmtune eval --task mcq`), one JSON object a line:
//   {"id": "q1", "image": "imgs/1.jpg", "question": "Is there a dog in the image?", "answer": "yes"}
//   {"id": "q2", "image": "imgs/2.jpg", "question": "Which colour is the car?",
//    "choices": ["red", "blue", "green"], "answer": "B"}
// "id" string or number (default: the line number); "image" optional (text-only), relative to
// data.image_folder or else to the file's folder; without "choices" the answer is "yes" or "no"
// (any case); with them it is an option letter ("B") or a 0-based index (1).
// Scores (POPE, Li et al. 2023, arXiv:2305.10355, for the yes/no items; "yes" is the positive
// class): accuracy over every item, and over the yes/no items precision = TP / (TP + FP),
// recall = TP / (TP + FN), F1, yes-ratio = answers "yes" / yes/no items. An unparsable answer is
// wrong (a "yes" item's is a false negative) unless eval.unparsable: random replaced it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mmtune::eval {

struct ChoiceItem {
  std::string id;
  std::string image;                 // resolved path; "" = text-only
  std::string question;
  std::vector<std::string> choices;  // empty = a yes/no question
  std::string answer;                // "yes" / "no", or the option letter "A", "B", ...
  bool yes_no() const { return choices.empty(); }
};

/// Reads the JSONL file (layout above); `limit` > 0 keeps the first N items. Throws DataError
/// naming the file and line: unreadable file, bad JSON, a missing question or answer, an answer
/// that is not yes/no or not one of the choices, more than 26 choices, a missing image.
std::vector<ChoiceItem> read_choice_items(const std::string& path, const std::string& image_folder, int64_t limit);

/// "yes" or "no": the first of the two words (any case, whole word) in `text`; "" when neither.
std::string extract_yes_no(std::string_view text);

/// The option index in `text`: LaVIN's "The answer is X." (data/prompt.h), else a reply that
/// starts with the letter alone ("B", "B.", "(B)", "B) ...", "B: ..."), else a reply equal to one
/// choice's text (case-insensitive, trailing "." ignored); -1 when none or out of range.
int64_t extract_option(std::string_view text, const std::vector<std::string>& choices);

struct ChoiceScores {
  int64_t count = 0, correct = 0, unparsable = 0;
  int64_t yes_no_count = 0, yes_no_correct = 0;
  int64_t tp = 0, fp = 0, tn = 0, fn = 0, yes_answers = 0;
  int64_t choice_count = 0, choice_correct = 0;
  double accuracy() const;
  double yes_no_accuracy() const;
  double precision() const;  // 0 when nothing was answered "yes"
  double recall() const;
  double f1() const;
  double yes_ratio() const;
  double choice_accuracy() const;
};

/// Scores `predicted` (one per item, in order: "yes" / "no" / an option letter, "" = unparsable).
/// Throws mmtune::Error when the sizes differ.
ChoiceScores score_choices(const std::vector<ChoiceItem>& items, const std::vector<std::string>& predicted);

/// The console lines (percentages with 2 decimals, counts).
std::string format_choice_scores(const ChoiceScores& s);

}  // namespace mmtune::eval
