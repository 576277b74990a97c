// ScienceQA (spec §1.12): generate an answer for every question of the split (LaVIN's prompt,
// left-padded batches), take the option of the first "The answer is X." match, score by category
// and write the official results layout. An unparsable answer is wrong (eval.unparsable: wrong) or,
// as LaVIN's eval does, a random valid option (random) drawn from (seed, question id) so that it
// does not depend on batch size, rank or order.
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/data/dataset.h>
#include <mmtune/data/prompt.h>
#include <mmtune/eval/scienceqa_score.h>
#include <mmtune/eval/task.h>

#include <algorithm>
#include <sstream>

#include "jsonl.h"

namespace mmtune::eval {
namespace {

using json = nlohmann::json;

EvalReport report(const EvalEnv& env, const std::vector<data::Example>& examples,
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
                  {"adapter_family", env.cfg.adapter.family},
                  {"model", env.cfg.model.path}};
  EvalReport r;
  r.console = console.str();
  r.results_json = scienceqa_results_json(scores, predictions, args.dump());
  r.items = static_cast<int64_t>(examples.size());
  return r;
}

class ScienceQATask final : public EvalTask {
 public:
  std::string name() const override { return "scienceqa"; }
  bool uses_split() const override { return true; }

  EvalReport run(EvalEnv& env) override {
    if (env.cfg.data.format != "scienceqa")
      throw ConfigError({{"data.format", "data.format",
                          "--task scienceqa reads the ScienceQA layout, got data.format '" + env.cfg.data.format + "'",
                          "set data.format: scienceqa and data.root to the folder with problems.json"}});
    auto split = data::read_split(env.cfg.data, env.layout, env.split, env.limit);
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
        int64_t predicted = data::extract_answer(gens[i].text, n_choices);
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
    return report(env, examples, predictions, split.skipped);
  }
};

}  // namespace

std::unique_ptr<EvalTask> make_scienceqa_task() { return std::make_unique<ScienceQATask>(); }

}  // namespace mmtune::eval
