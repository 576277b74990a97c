// mmtune eval --config FILE --checkpoint DIR --task scienceqa --split test [--limit N]
// mmtune eval --task perplexity --model DIR --text FILE [--dump-logprobs out.jsonl]
#include <mmtune/core/errors.h>
#include <mmtune/eval/perplexity.h>
#include <mmtune/model/weights.h>

#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"

namespace mmtune::cli {
namespace {

struct EvalArgs {
  ConfigArgs config;
  std::string checkpoint, task, split, model, text, dump, device = "cpu", dtype = "fp32";
  int64_t limit = -1;
};

int run_perplexity(const EvalArgs& a) {
  std::string model_dir = a.model, device = a.device, dtype = a.dtype, text_path = a.text;
  if (!a.config.path.empty()) {
    const auto cfg = load_run_config(a.config);
    if (model_dir.empty()) model_dir = cfg.model.path;
    if (text_path.empty()) text_path = cfg.eval.data;
    device = cfg.device;
    dtype = cfg.dtype;
  }
  if (model_dir.empty()) throw UsageError("--task perplexity needs a model", "pass --model DIR (or --config with model.path)");
  if (text_path.empty()) throw UsageError("--task perplexity needs a text", "pass --text FILE (or eval.data in the config)");
  std::ifstream f(text_path, std::ios::binary);
  if (!f) throw DataError(text_path, "cannot read the text file", "check the path");
  std::stringstream ss;
  ss << f.rdbuf();
  auto tok = model::load_tokenizer(model_dir);
  auto llm = model::load_llama(model_dir, model::model_options(device, dtype));
  std::ofstream dump;
  if (!a.dump.empty()) {
    dump.open(a.dump);
    if (!dump) throw Error("cannot write " + a.dump, "check the directory");
  }
  const auto r = eval::perplexity(*llm, *tok, ss.str(), 0, [&](int64_t i, int64_t id, double lp) {
    if (dump) dump << nlohmann::json{{"index", i}, {"token", id}, {"piece", tok->id_to_piece(id)}, {"logprob", lp}}.dump() << "\n";
  });
  std::cout << std::setprecision(8) << "tokens " << r.tokens << "\nmean_nll " << r.mean_nll() << "\nperplexity "
            << r.perplexity() << "\n";
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Evaluate base + adapter on a benchmark (ScienceQA by category, perplexity, ...)");
  add_config_args(cmd, args->config, /*required=*/false);
  cmd->add_option("--checkpoint", args->checkpoint, "adapter checkpoint directory");
  cmd->add_option("--task", args->task, "scienceqa | perplexity | loss | mcq | grounding (overrides eval.task)");
  cmd->add_option("--split", args->split, "test | val | minitest (overrides eval.split)");
  cmd->add_option("--limit", args->limit, "evaluate only the first N items");
  cmd->add_option("--model", args->model, "perplexity: model directory (instead of --config)");
  cmd->add_option("--text", args->text, "perplexity: text file to score");
  cmd->add_option("--dump-logprobs", args->dump, "perplexity: write one JSON line per token");
  cmd->add_option("--device", args->device, "perplexity without --config: cpu | cuda | cuda:N");
  cmd->add_option("--dtype", args->dtype, "perplexity without --config: fp32 | bf16 | fp16");
  cmd->footer("Examples:\n  mmtune eval --config configs/lavin/tiny.yaml --checkpoint runs/lavin-tiny/checkpoint-last "
              "--task scienceqa --split test\n  mmtune eval --task perplexity --model models/stories260K --text story.txt "
              "--dump-logprobs lp.jsonl");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      if (args->task == "perplexity") return run_perplexity(*args);
      if (args->config.path.empty()) throw UsageError("--config is required for --task " + (args->task.empty() ? std::string("scienceqa") : args->task));
      load_run_config(args->config);
      not_built_yet("eval --task " + (args->task.empty() ? std::string("scienceqa") : args->task), "issue #7: eval and chat");
    };
  });
}

}  // namespace mmtune::cli
