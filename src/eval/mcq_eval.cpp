// Generic yes/no and multiple-choice questions from a JSONL file (eval/choice_score.h has the
// layout and the metrics; POPE is one such file). The prompt follows the model's data config
// (question_example in eval/task.h): LaVIN models see yes/no questions as the two options
// "(A) yes (B) no" and answer with "The answer is X."; template models get LLaVA's short-answer
// instructions. Unparsable answers are wrong, or with eval.unparsable: random a seeded random valid
// answer (seeded by the run seed and the item id, as for ScienceQA).
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/data/prompt.h>
#include <mmtune/eval/choice_score.h>
#include <mmtune/eval/task.h>

#include <sstream>

#include "jsonl.h"

namespace mmtune::eval {
namespace {

using json = nlohmann::json;

const std::vector<std::string> kYesNo{"yes", "no"};

// The normalised answer in `text` ("yes" / "no" / an option letter), "" when there is none.
std::string parse_answer(const ChoiceItem& it, const std::string& text, bool lavin) {
  if (it.yes_no()) {
    const int64_t k = lavin ? data::extract_answer(text, 2) : -1;  // LaVIN saw "(A) yes (B) no"
    return k >= 0 ? kYesNo[static_cast<size_t>(k)] : extract_yes_no(text);
  }
  const int64_t k = extract_option(text, it.choices);
  return k >= 0 ? std::string(1, data::option_letter(k)) : std::string();
}

EvalReport mcq_report(const EvalEnv& env, const std::vector<ChoiceItem>& items, const std::vector<json>& rows) {
  std::vector<std::string> predicted, unparsable;
  json results = json::object(), outputs = json::object();
  for (size_t i = 0; i < items.size(); ++i) {
    predicted.push_back(rows[i]["answer"].get<std::string>());
    if (!rows[i]["parsed"].get<bool>()) unparsable.push_back(items[i].id);
    results[items[i].id] = predicted.back();
    outputs[items[i].id] = rows[i]["output"];
  }
  const ChoiceScores s = score_choices(items, predicted);
  std::ostringstream console;
  console << format_choice_scores(s);
  if (env.cfg.eval.unparsable == "random" && !unparsable.empty())
    console << unparsable.size() << " unparsable answer(s) replaced by a seeded random option\n";
  json j{{"task", "mcq"},       {"acc", s.accuracy()}, {"correct", s.correct},       {"count", s.count},
         {"results", results}, {"outputs", outputs},  {"unparsable", unparsable},
         {"args",
          {{"data", env.cfg.eval.data},
           {"checkpoint", env.checkpoint},
           {"limit", env.limit},
           {"batch_size", env.cfg.eval.batch_size},
           {"unparsable", env.cfg.eval.unparsable},
           {"seed", env.cfg.seed},
           {"adapter_family", env.cfg.adapter.family},
           {"model", env.cfg.model.path}}}};
  if (s.yes_no_count > 0) {
    j["yes_no"] = {{"acc", s.yes_no_accuracy()}, {"precision", s.precision()}, {"recall", s.recall()},
                   {"f1", s.f1()},               {"yes_ratio", s.yes_ratio()}, {"count", s.yes_no_count},
                   {"tp", s.tp},                 {"fp", s.fp},                 {"tn", s.tn},
                   {"fn", s.fn}};
  }
  if (s.choice_count > 0) j["choices"] = {{"acc", s.choice_accuracy()}, {"count", s.choice_count}};
  EvalReport r;
  r.console = console.str();
  r.results_json = j.dump(2) + "\n";
  r.items = s.count;
  return r;
}

class McqTask final : public EvalTask {
 public:
  std::string name() const override { return "mcq"; }
  bool uses_split() const override { return false; }

  EvalReport run(EvalEnv& env) override {
    const std::string& path = env.cfg.eval.data;
    if (path.empty()) throw UsageError("--task mcq needs a JSONL file", "pass --data FILE (or set eval.data)");
    const auto items = read_choice_items(path, env.cfg.data.image_folder, env.limit);
    if (env.rank == 0) log::info() << "mcq: " << path << ", " << items.size() << " questions";
    const bool lavin = env.cfg.data.format == "scienceqa";
    const bool random_fallback = env.cfg.eval.unparsable == "random";

    std::vector<std::string> records;
    eval_batches(env, static_cast<int64_t>(items.size()), "mcq", [&](int64_t batch, int64_t begin, int64_t end) {
      std::vector<data::Example> chunk;
      for (int64_t i = begin; i < end; ++i) {
        const auto& it = items[static_cast<size_t>(i)];
        const std::string q = it.question + (it.yes_no() && !lavin ? "\nAnswer the question using a single word or phrase." : "");
        chunk.push_back(question_example(env, it.id, it.image, q, it.yes_no() && lavin ? kYesNo : it.choices));
      }
      const auto gens = generate_answers(env, chunk, batch);
      for (int64_t i = begin; i < end; ++i) {
        const auto& it = items[static_cast<size_t>(i)];
        const std::string& text = gens[static_cast<size_t>(i - begin)].text;
        std::string answer = parse_answer(it, text, lavin);
        const bool parsed = !answer.empty();
        if (!parsed && random_fallback) {
          const auto n = it.yes_no() ? 2 : static_cast<int64_t>(it.choices.size());
          const int64_t k = seeded_choice(static_cast<uint64_t>(env.cfg.seed), it.id, n);
          answer = it.yes_no() ? kYesNo[static_cast<size_t>(k)] : std::string(1, data::option_letter(k));
        }
        records.push_back(json{{"index", i}, {"id", it.id}, {"output", text}, {"answer", answer}, {"parsed", parsed}}.dump());
      }
    });
    const auto all = gather_records(env, records);
    if (env.rank != 0) return {};
    return mcq_report(env, items, detail::records_by_index(all, items.size(), "mcq"));
  }
};

}  // namespace

std::unique_ptr<EvalTask> make_mcq_task() { return std::make_unique<McqTask>(); }

}  // namespace mmtune::eval
