// ScienceQA (spec §1.12): generate an answer for every question of the split (LaVIN's prompt,
// left-padded batches), take the option of the first "The answer is X." match, score by category
// and write the official results layout. An unparsable answer is wrong (eval.unparsable: wrong) or,
// as LaVIN's eval does, a random valid option (random) drawn from (seed, question id) so that it
// does not depend on batch size, rank or order.
// With data.format: llava_json (families trained on LLaVA's conversion, e.g. IAA) the questions are
// data.json's conversations (scripts/scienceqa_to_llava.py writes one per split) and the options,
// answers and categories come from data.root's problems.json by id, as LLaVA's eval_science_qa.py
// does; its answer rule applies: a bare option letter, "X. ..." or "The answer is X.".
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/data/dataset.h>
#include <mmtune/data/llava_json.h>
#include <mmtune/data/scienceqa.h>
#include <mmtune/data/prompt.h>
#include <mmtune/eval/scienceqa_score.h>
#include <mmtune/eval/task.h>

#include <algorithm>
#include <sstream>

#include "jsonl.h"

namespace mmtune::eval {
namespace {

using json = nlohmann::json;

EvalReport scienceqa_report(const EvalEnv& env, const std::vector<data::Example>& examples,
                             const std::vector<Prediction>& predictions, int64_t skipped) {
  const ScienceQAScores scores = score_scienceqa(examples, predictions);
  std::ostringstream console;
  console << format_scienceqa_table(scores);
  if (!scores.unparsable.empty()) {
    console << scores.unparsable.size() << " unparsable answer(s) "
            << (env.cfg.eval.unparsable == "random" ? "replaced by a seeded random option" : "counted wrong") << ":";
    const size_t shown = std::min<size_t>(scores.unparsable.size(), 20);
    for (size_t i = 0; i < shown; ++i) console << " " << scores.unparsable[i];
    if (shown < scores.unparsable.size()) console << " ... (all in results.json)";
    console << "\n";
  }
  if (skipped > 0) console << skipped << " question(s) skipped for a missing image (data.on_bad_sample: skip)\n";
  const json args{{"task", "scienceqa"},
                  {"split", env.split},
                  {"checkpoint", env.checkpoint},
                  {"data_root", env.cfg.data.root},
                  {"prompt_format", env.cfg.data.prompt_format},
                  {"limit", env.limit},
                  {"batch_size", env.cfg.eval.batch_size},
                  {"unparsable", env.cfg.eval.unparsable},
                  {"seed", env.cfg.seed},
                  {"max_new_tokens", env.cfg.eval.generation.max_new_tokens},
                  {"temperature", env.cfg.eval.generation.temperature},
                  {"top_p", env.cfg.eval.generation.top_p},
                  {"compat", env.cfg.eval.generation.compat},
                  {"adapter_family", env.cfg.adapter.family},
                  {"model", env.cfg.model.path}};
  EvalReport r;
  r.console = console.str();
  r.results_json = scienceqa_results_json(scores, predictions, args.dump());
  r.items = static_cast<int64_t>(examples.size());
  return r;
}

/// LLaVA's ScienceQA answer rule (eval_science_qa.py): the whole reply is an option letter, or it
/// starts with "X. ", else the first "The answer is X." match. -1 when none names a valid option.
int64_t extract_llava_answer(const std::string& text, int64_t n_choices) {
  const std::string t = data::python_strip(text);
  auto index = [&](char c) { return c >= 'A' && c - 'A' < n_choices ? int64_t{c - 'A'} : int64_t{-1}; };
  if (t.size() == 1) return index(t[0]);
  if (t.size() >= 3 && t[1] == '.' && t[2] == ' ' && index(t[0]) >= 0) return index(t[0]);
  return data::extract_answer(t, n_choices);
}

/// The split's questions from a LLaVA conversion, joined with problems.json by id.
data::SplitData read_llava_scienceqa(const EvalEnv& env) {
  const auto& d = env.cfg.data;
  if (d.root.empty())
    throw ConfigError({{"data.root", "data.root",
                        "--task scienceqa with data.format llava_json needs the ScienceQA folder for the answers",
                        "set data.root to the folder with problems.json (and data.json to the split's conversion)"}});
  auto o = data::llava_json_options(d, env.layout);
  if (env.limit > 0) o.limit = env.limit;
  auto conv = data::read_llava_json(o);
  const std::string problems_path = data::scienceqa_path(d.root, d.problems_file);
  const auto problems = data::read_scienceqa_problems(problems_path);
  data::SplitData out;
  out.source = "llava_json " + o.json_path + " + " + problems_path;
  out.skipped = conv.skipped;
  out.skipped_ids = conv.skipped_ids;
  for (auto& e : conv.examples) {
    auto it = problems.find(e.id);
    if (it == problems.end())
      throw DataError(o.json_path, "question id '" + e.id + "' is not in " + problems_path,
                      "data.json and data.root must describe the same ScienceQA problems");
    const auto& p = it->second;
    e.choices = p.text.choices;
    e.answer_index = p.text.answer_index;
    e.meta = {{"subject", p.subject}, {"grade", p.grade},      {"hint", p.text.hint},
              {"image", p.image.value_or("")}, {"has_image", p.image ? "1" : "0"}, {"split", p.split}};
    out.examples.push_back(std::move(e));
  }
  return out;
}

class ScienceQATask final : public EvalTask {
 public:
  std::string name() const override { return "scienceqa"; }
  bool uses_split() const override { return true; }

  EvalReport run(EvalEnv& env) override {
    const bool llava = env.cfg.data.format == "llava_json";
    if (env.cfg.data.format != "scienceqa" && !llava)
      throw ConfigError({{"data.format", "data.format",
                          "--task scienceqa reads the ScienceQA layout or its LLaVA conversion, got data.format '" +
                              env.cfg.data.format + "'",
                          "set data.format: scienceqa and data.root to the folder with problems.json"}});
    auto split = llava ? read_llava_scienceqa(env) : data::read_split(env.cfg.data, env.layout, env.split, env.limit);
    const std::vector<data::Example>& examples = split.examples;
    if (examples.empty()) throw DataError(split.source, "no questions to evaluate", "check --split and --limit");
    if (env.rank == 0) log::info() << "scienceqa: " << split.source << ", " << examples.size() << " questions";
    const bool random_fallback = env.cfg.eval.unparsable == "random";
    const auto seed = static_cast<uint64_t>(env.cfg.seed);

    std::vector<std::string> records;
    eval_batches(env, static_cast<int64_t>(examples.size()), "scienceqa", [&](int64_t batch, int64_t begin, int64_t end) {
      std::vector<data::Example> chunk(examples.begin() + begin, examples.begin() + end);
      const auto gens = generate_answers(env, chunk, batch);
      for (size_t i = 0; i < chunk.size(); ++i) {
        const auto n_choices = static_cast<int64_t>(chunk[i].choices.size());
        int64_t predicted = llava ? extract_llava_answer(gens[i].text, n_choices)
                                  : data::extract_answer(gens[i].text, n_choices);
        const bool parsed = predicted >= 0;
        if (!parsed && random_fallback) predicted = seeded_choice(seed, chunk[i].id, n_choices);
        records.push_back(json{{"index", begin + static_cast<int64_t>(i)},
                               {"id", chunk[i].id},
                               {"output", gens[i].text},
                               {"predicted", predicted},
                               {"parsed", parsed}}
                              .dump());
      }
    });
    const auto all = gather_records(env, records);
    if (env.rank != 0) return {};
    std::vector<Prediction> predictions;
    for (const auto& j : detail::records_by_index(all, examples.size(), "scienceqa"))
      predictions.push_back({j["id"].get<std::string>(), j["output"].get<std::string>(), j["predicted"].get<int64_t>(),
                             j["parsed"].get<bool>()});
    return scienceqa_report(env, examples, predictions, split.skipped);
  }
};

}  // namespace

std::unique_ptr<EvalTask> make_scienceqa_task() { return std::make_unique<ScienceQATask>(); }

}  // namespace mmtune::eval
