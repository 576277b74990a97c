#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/prompt.h>
#include <mmtune/eval/choice_score.h>

#include <algorithm>
#include <cctype>
#include <iomanip>
#include <sstream>

#include "jsonl.h"

namespace mmtune::eval {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

double pct(int64_t a, int64_t b) { return b ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0; }

}  // namespace

std::vector<ChoiceItem> read_choice_items(const std::string& path, const std::string& image_folder, int64_t limit) {
  std::vector<ChoiceItem> items;
  for (const auto& l : detail::read_jsonl_objects(path, limit)) {
    ChoiceItem it;
    it.id = detail::string_field(path, l, "id", false);
    if (it.id.empty()) it.id = std::to_string(l.line);
    it.image = detail::resolve_image(path, l, detail::string_field(path, l, "image", false), image_folder);
    it.question = detail::string_field(path, l, "question");
    if (l.value.contains("choices")) {
      const auto& c = l.value["choices"];
      if (!c.is_array() || c.empty() || c.size() > 26)
        throw DataError(path, cat("line ", l.line, ": \"choices\" must be a list of 1 to 26 strings"));
      for (const auto& x : c) {
        if (!x.is_string()) throw DataError(path, cat("line ", l.line, ": every choice must be a string"));
        it.choices.push_back(x.get<std::string>());
      }
    }
    const auto a = l.value.find("answer");
    if (a == l.value.end()) throw DataError(path, cat("line ", l.line, " has no \"answer\""));
    if (it.yes_no()) {
      it.answer = a->is_string() ? lower(a->get<std::string>()) : std::string();
      if (it.answer != "yes" && it.answer != "no")
        throw DataError(path, cat("line ", l.line, ": the answer of a question without \"choices\" must be yes or no"),
                        "add \"choices\" for a multiple-choice question");
    } else {
      int64_t index = -1;
      if (a->is_number_integer()) index = a->get<int64_t>();
      else if (a->is_string() && a->get<std::string>().size() == 1) index = std::toupper(a->get<std::string>()[0]) - 'A';
      if (index < 0 || index >= static_cast<int64_t>(it.choices.size()))
        throw DataError(path, cat("line ", l.line, ": the answer must be an option letter or 0-based index among ",
                                  it.choices.size(), " choices, got ", a->dump()));
      it.answer = std::string(1, data::option_letter(index));
    }
    items.push_back(std::move(it));
  }
  return items;
}

std::string extract_yes_no(std::string_view text) {
  const std::string t = lower(text);
  for (size_t i = 0; i < t.size();) {
    if (!is_alpha(t[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < t.size() && is_alpha(t[j])) ++j;
    const std::string_view word(t.data() + i, j - i);
    if (word == "yes" || word == "no") return std::string(word);
    i = j;
  }
  return {};
}

int64_t extract_option(std::string_view text, const std::vector<std::string>& choices) {
  const auto n = static_cast<int64_t>(choices.size());
  if (const int64_t i = data::extract_answer(text, n); i >= 0) return i;
  const std::string t = data::python_strip(text);
  size_t p = 0;
  if (p < t.size() && t[p] == '(') ++p;
  if (p < t.size() && t[p] >= 'A' && t[p] <= 'Z') {
    const size_t after = p + 1;
    const bool alone = after == t.size() || std::string_view(".):, \n").find(t[after]) != std::string_view::npos;
    if (alone) {
      const int64_t i = t[p] - 'A';
      return i < n ? i : -1;
    }
  }
  std::string reply = lower(t);
  if (!reply.empty() && reply.back() == '.') reply.pop_back();
  for (int64_t i = 0; i < n; ++i) {
    if (lower(data::python_strip(choices[static_cast<size_t>(i)])) == reply) return i;
  }
  return -1;
}

double ChoiceScores::accuracy() const { return pct(correct, count); }
double ChoiceScores::yes_no_accuracy() const { return pct(yes_no_correct, yes_no_count); }
double ChoiceScores::precision() const { return pct(tp, tp + fp); }
double ChoiceScores::recall() const { return pct(tp, tp + fn); }
double ChoiceScores::f1() const {
  const double p = precision(), r = recall();
  return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
}
double ChoiceScores::yes_ratio() const { return pct(yes_answers, yes_no_count); }
double ChoiceScores::choice_accuracy() const { return pct(choice_correct, choice_count); }

ChoiceScores score_choices(const std::vector<ChoiceItem>& items, const std::vector<std::string>& predicted) {
  if (items.size() != predicted.size())
    throw Error(cat("score_choices: ", items.size(), " items but ", predicted.size(), " predictions"));
  ChoiceScores s;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& it = items[i];
    const auto& p = predicted[i];
    const bool right = !p.empty() && p == it.answer;
    ++s.count;
    s.correct += right;
    s.unparsable += p.empty();
    if (it.yes_no()) {
      ++s.yes_no_count;
      s.yes_no_correct += right;
      s.yes_answers += p == "yes";
      if (it.answer == "yes") (p == "yes" ? s.tp : s.fn) += 1;
      else if (p == "yes") s.fp += 1;
      else if (p == "no") s.tn += 1;
    } else {
      ++s.choice_count;
      s.choice_correct += right;
    }
  }
  return s;
}

std::string format_choice_scores(const ChoiceScores& s) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(2);
  os << "accuracy " << s.accuracy() << " (" << s.correct << "/" << s.count << ")\n";
  if (s.yes_no_count > 0) {
    os << "yes/no   accuracy " << s.yes_no_accuracy() << "  precision " << s.precision() << "  recall " << s.recall()
       << "  f1 " << s.f1() << "  yes_ratio " << s.yes_ratio() << "  (" << s.yes_no_count << " questions)\n";
  }
  if (s.choice_count > 0)
    os << "choices  accuracy " << s.choice_accuracy() << "  (" << s.choice_count << " questions)\n";
  if (s.unparsable > 0) os << s.unparsable << " unparsable answer(s) counted wrong\n";
  return os.str();
}

}  // namespace mmtune::eval
