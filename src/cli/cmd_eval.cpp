// mmtune eval --config FILE --checkpoint DIR --task scienceqa --split test [--limit N] [key=value ...]
// mmtune eval --task perplexity --model DIR --text FILE [--dump-logprobs out.jsonl]
#include <mmtune/core/logging.h>
#include <mmtune/eval/runner.h>

#include <iomanip>
#include <iostream>

#include "commands.h"

namespace mmtune::cli {

void add_eval_command(CLI::App& app, Action& action) {
  struct Args {
    ConfigArgs config;
    eval::EvalRunOptions run;
    std::string text;
    bool no_progress = false;
  };
  auto args = std::make_shared<Args>();
  auto& r = args->run;
  auto* cmd = app.add_subcommand("eval", "Evaluate base + adapter on a benchmark (ScienceQA by category, loss, "
                                         "multiple choice / yes-no, grounding, perplexity)");
  add_config_args(cmd, args->config, /*required=*/false);
  cmd->add_option("--checkpoint", r.checkpoint,
                  "adapter directory (adapter_config.json + adapter_model.safetensors) or a training output_dir "
                  "(its latest checkpoint-*); the adapter's family and options come from it");
  cmd->add_option("--adapter", r.adapters,
                  "NAME=DIR, repeatable: IAA workflows served together on one frozen base (instead of "
                  "--checkpoint); --workflow picks the one evaluated")
      ->allow_extra_args(false);  // one value per --adapter: overrides after it stay positional
  cmd->add_option("--workflow", r.workflow,
                  "IAA: the workflow evaluated (a --adapter NAME, or text = the bare LLM); default the first");
  cmd->add_option("--task", r.task, "scienceqa | loss | mcq | grounding | perplexity (overrides eval.task)");
  cmd->add_option("--split", r.split, "scienceqa / loss: data split, e.g. test | val | minitest (overrides eval.split)");
  cmd->add_option("--data", r.data, "mcq / grounding: JSONL file; perplexity: text file (overrides eval.data)");
  cmd->add_option("--limit", r.limit, "evaluate only the first N items (overrides eval.limit)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", r.batch_size, "questions per generation batch (overrides eval.batch_size)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--unparsable", r.unparsable, "answers without an option: wrong (default) | random (LaVIN's protocol)")
      ->check(CLI::IsMember({"wrong", "random"}));
  cmd->add_option("--output", r.output,
                  "results.json path; default <checkpoint>/eval-<task>-<split>/results.json, or "
                  "<output_dir>/eval-<task>-<split>/results.json without --checkpoint (config.yaml and mmtune.log "
                  "of the evaluation go next to it)");
  cmd->add_flag("--no-progress", args->no_progress, "no progress bar");
  cmd->add_option("--model", r.model, "perplexity: model directory (instead of --config)");
  cmd->add_option("--text", args->text, "perplexity: text file to score (same as --data)");
  cmd->add_option("--dump-logprobs", r.dump, "perplexity: write one JSON line per token");
  cmd->add_option("--device", r.device, "perplexity without --config: cpu | cuda | cuda:N");
  cmd->add_option("--dtype", r.dtype, "perplexity without --config: fp32 | bf16 | fp16");
  cmd->footer(
      "Examples:\n"
      "  mmtune eval --config configs/lavin/tiny.yaml --checkpoint runs/lavin-tiny --task scienceqa --split test\n"
      "  torchrun --nproc-per-node 2 --no-python mmtune eval --config configs/scienceqa.yaml --checkpoint DIR "
      "--unparsable random\n"
      "  mmtune eval --config configs/lavin/tiny.yaml --checkpoint DIR --task loss --split val\n"
      "  mmtune eval --config C --checkpoint DIR --task mcq --data pope.jsonl\n"
      "  mmtune eval --task perplexity --model models/stories260K --text story.txt --dump-logprobs lp.jsonl\n"
      "Task files (JSONL, one object a line; \"image\" relative to data.image_folder or the file's folder):\n"
      "  mcq        {\"id\", \"image\", \"question\", \"answer\": \"yes\"|\"no\"}  or with \"choices\": [..] and "
      "\"answer\": \"B\"\n"
      "             -> accuracy; yes/no: precision, recall, F1, yes-ratio (POPE)\n"
      "  grounding  {\"id\", \"image\", \"expression\", \"box\": [x1, y1, x2, y2]}  normalised to the padded square\n"
      "             -> precision@IoU 0.5\n"
      "Ranks: under torchrun each rank takes whole batches (batch i -> rank i % world), so results equal a "
      "single process's; rank 0 prints and writes.");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      auto o = args->run;
      o.config_path = args->config.path;
      // a bare --model takes the quantization flags as such (and no key=value overrides)
      o.overrides = o.config_path.empty() ? args->config.overrides : args->config.all_overrides();
      o.quantize = args->config.quantize;
      o.quant_group = args->config.quant_group;
      o.quant_fallback = args->config.quant_fallback;
      if (!args->text.empty()) o.data = args->text;
      o.progress = !args->no_progress;
      const auto s = eval::run_eval(o);
      if (s.report.console.empty()) return 0;  // ranks > 0
      std::cout << s.report.console << std::flush;
      const double rate = s.seconds > 0 ? static_cast<double>(s.report.items) / s.seconds : 0.0;
      log::info() << s.report.items << " " << s.report.unit << " in " << std::fixed << std::setprecision(2) << s.seconds
                  << " s: " << rate << " " << s.report.unit << "/s (batch " << s.batch_size << ", " << s.world
                  << (s.world == 1 ? " process)" : " processes)");
      if (!s.results_path.empty()) log::info() << "results: " << s.results_path;
      return 0;
    };
  });
}

}  // namespace mmtune::cli
