#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/eval/scienceqa_score.h>

#include <iomanip>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace mmtune::eval {
namespace {

std::string meta(const data::Example& e, const std::string& key) {
  auto it = e.meta.find(key);
  return it == e.meta.end() ? std::string() : it->second;
}

int grade_number(const std::string& grade) {
  if (grade.rfind("grade", 0) != 0) return -1;
  try {
    return std::stoi(grade.substr(5));
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

const std::vector<std::string>& scienceqa_categories() {
  static const std::vector<std::string> k{"NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Avg"};
  return k;
}

std::vector<std::string> scienceqa_categories_of(const data::Example& e) {
  std::vector<std::string> c;
  const std::string subject = meta(e, "subject");
  if (subject == "natural science") c.push_back("NAT");
  if (subject == "social science") c.push_back("SOC");
  if (subject == "language science") c.push_back("LAN");
  const bool text = !meta(e, "hint").empty();
  const bool image = !e.image_path.empty() || !meta(e, "image").empty();
  if (text) c.push_back("TXT");
  if (image) c.push_back("IMG");
  if (!text && !image) c.push_back("NO");
  const int g = grade_number(meta(e, "grade"));
  if (g >= 1 && g <= 6) c.push_back("G1-6");
  if (g >= 7 && g <= 12) c.push_back("G7-12");
  c.push_back("Avg");
  return c;
}

ScienceQAScores score_scienceqa(const std::vector<data::Example>& examples, const std::vector<Prediction>& predictions) {
  std::unordered_map<std::string, const Prediction*> by_id;
  for (const auto& p : predictions) by_id[p.id] = &p;
  ScienceQAScores s;
  for (const auto& k : scienceqa_categories()) s.categories[k] = {};
  for (const auto& e : examples) {
    auto it = by_id.find(e.id);
    if (it == by_id.end()) throw Error("no prediction for question " + e.id, "every evaluated question needs an output");
    const Prediction& p = *it->second;
    if (!p.parsed) s.unparsable.push_back(e.id);
    const bool right = p.predicted >= 0 && p.predicted == e.answer_index;
    for (const auto& c : scienceqa_categories_of(e)) {
      auto& cs = s.categories[c];
      ++cs.count;
      cs.correct += right;
    }
  }
  return s;
}

std::string format_scienceqa_table(const ScienceQAScores& s) {
  std::ostringstream os;
  for (const auto& k : scienceqa_categories()) os << std::setw(8) << k;
  os << "\n" << std::fixed << std::setprecision(2);
  for (const auto& k : scienceqa_categories()) os << std::setw(8) << s.categories.at(k).accuracy();
  os << "\n";
  for (const auto& k : scienceqa_categories()) os << std::setw(8) << s.categories.at(k).count;
  os << "  (questions)\n";
  return os.str();
}

std::string scienceqa_results_json(const ScienceQAScores& s, const std::vector<Prediction>& predictions,
                                   const std::string& args_json) {
  nlohmann::json j;
  const auto& avg = s.categories.at("Avg");
  j["acc"] = avg.accuracy();
  j["correct"] = avg.correct;
  j["count"] = avg.count;
  nlohmann::json results = nlohmann::json::object(), outputs = nlohmann::json::object();
  for (const auto& p : predictions) {
    results[p.id] = p.predicted;
    outputs[p.id] = p.output;
  }
  j["results"] = results;
  j["outputs"] = outputs;
  nlohmann::json cats = nlohmann::json::object();
  for (const auto& k : scienceqa_categories()) {
    const auto& c = s.categories.at(k);
    cats[k] = {{"acc", c.accuracy()}, {"correct", c.correct}, {"count", c.count}};
  }
  j["categories"] = cats;
  j["unparsable"] = s.unparsable;
  j["args"] = args_json.empty() ? nlohmann::json::object() : nlohmann::json::parse(args_json);
  return j.dump(2) + "\n";
}

}  // namespace mmtune::eval
