// ScienceQA scoring with the benchmark's own category definitions (spec §1.12; lupantech/ScienceQA
// models/utils.py get_scores): a question counts in every category it belongs to.
//   NAT / SOC / LAN   subject is natural / social / language science
//   TXT               the hint (text context) is non-empty
//   IMG               the problem has an image
//   NO                neither hint nor image
//   G1-6 / G7-12      grade1..grade6 / grade7..grade12
//   Avg               all questions
// and the official results file layout: {"acc", "correct", "count", "results": {pid: index},
// "outputs": {pid: text}, "args": {...}} plus mmtune's per-category table under "categories".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <mmtune/data/batch.h>

namespace mmtune::eval {

/// The category keys in table order.
const std::vector<std::string>& scienceqa_categories();

/// What the model said about one question.
struct Prediction {
  std::string id;
  std::string output;       // generated text
  int64_t predicted = -1;   // option index from the answer extraction, -1 when unparsable
  bool parsed = false;      // the text had a valid "The answer is X." (before any random fallback)
};

struct CategoryScore {
  int64_t correct = 0;
  int64_t count = 0;
  double accuracy() const { return count ? 100.0 * static_cast<double>(correct) / static_cast<double>(count) : 0.0; }
};

struct ScienceQAScores {
  std::map<std::string, CategoryScore> categories;  // keys of scienceqa_categories()
  std::vector<std::string> unparsable;               // ids whose output had no valid answer
};

/// The categories one question belongs to, from Example::meta ("subject", "grade", "hint") and
/// whether it has an image (Example::image_path, or meta "image" non-empty).
std::vector<std::string> scienceqa_categories_of(const data::Example& example);

/// Scores predictions against the examples' answer_index (matched by id; every example must have
/// a prediction). Throws mmtune::Error naming the first id without one.
ScienceQAScores score_scienceqa(const std::vector<data::Example>& examples, const std::vector<Prediction>& predictions);

/// The console table: one header line of category names, one line of accuracies (2 decimals), and
/// the counts.
std::string format_scienceqa_table(const ScienceQAScores& scores);

/// results.json text in the official layout (see above); `args` is a JSON object text.
std::string scienceqa_results_json(const ScienceQAScores& scores, const std::vector<Prediction>& predictions,
                                   const std::string& args_json);

}  // namespace mmtune::eval
