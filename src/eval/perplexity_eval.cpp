// Perplexity of a text file (eval.data / --data) under the frozen base LLM (eval/perplexity.h): with
// --config the config's model.path, or a bare --model directory. Adapters are not applied (the
// LaVIN / IAA decoder adapters need the multimodal sequence); `--task loss` scores base + adapter.
// Runs on rank 0 only.
#include <mmtune/core/errors.h>
#include <mmtune/eval/perplexity.h>
#include <mmtune/eval/task.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/build_model.h>

#include <fstream>
#include <iomanip>
#include <sstream>

#include <nlohmann/json.hpp>

namespace mmtune::eval {
namespace {

using json = nlohmann::json;

class PerplexityTask final : public EvalTask {
 public:
  std::string name() const override { return "perplexity"; }
  bool uses_split() const override { return false; }
  bool needs_model() const override { return false; }

  EvalReport run(EvalEnv& env) override {
    if (!env.checkpoint.empty())
      throw UsageError("--task perplexity scores the frozen base model; it takes no --checkpoint",
                       "use --task loss to score base + adapter on a data split");
    const std::string& model_dir = env.cfg.model.path;
    const std::string& text_path = env.cfg.eval.data;
    if (model_dir.empty()) throw UsageError("--task perplexity needs a model", "pass --model DIR (or --config with model.path)");
    if (text_path.empty()) throw UsageError("--task perplexity needs a text", "pass --data FILE (or eval.data in the config)");
    if (env.rank != 0) return {};
    std::ifstream f(text_path, std::ios::binary);
    if (!f) throw DataError(text_path, "cannot read the text file", "check the path");
    std::stringstream ss;
    ss << f.rdbuf();
    auto tok = text::load_tokenizer(env.cfg.model.tokenizer.empty() ? model_dir : env.cfg.model.tokenizer);
    auto llm = model::load_llama(model_dir, model::model_options(env.cfg.device, env.cfg.dtype),
                                 runtime::quantization(env.cfg.model));
    std::ofstream dump;
    if (!env.dump.empty()) {
      dump.open(env.dump);
      if (!dump) throw Error("cannot write " + env.dump, "check the directory");
    }
    const auto r = perplexity(*llm, *tok, ss.str(), 0, [&](int64_t i, int64_t id, double lp) {
      if (dump) dump << json{{"index", i}, {"token", id}, {"piece", tok->id_to_piece(id)}, {"logprob", lp}}.dump() << "\n";
    });
    std::ostringstream console;
    console << std::setprecision(8) << "tokens " << r.tokens << "\nmean_nll " << r.mean_nll() << "\nperplexity "
            << r.perplexity() << "\n";
    const json j{{"task", "perplexity"}, {"tokens", r.tokens},        {"nll_sum", r.nll_sum},
                 {"mean_nll", r.mean_nll()}, {"perplexity", r.perplexity()}, {"args", {{"model", model_dir}, {"text", text_path}}}};
    EvalReport report;
    report.console = console.str();
    report.results_json = j.dump(2) + "\n";
    report.items = r.tokens;
    report.unit = "tokens";
    return report;
  }
};

}  // namespace

std::unique_ptr<EvalTask> make_perplexity_task() { return std::make_unique<PerplexityTask>(); }

}  // namespace mmtune::eval
