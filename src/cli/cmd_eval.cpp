// mmtune eval --config FILE --checkpoint DIR --task scienceqa --split test [--limit N]
#include "commands.h"

namespace mmtune::cli {

void add_eval_command(CLI::App& app, Action& action) {
  struct Args {
    ConfigArgs config;
    std::string checkpoint, task, split;
    int64_t limit = -1;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("eval", "Evaluate base + adapter on a benchmark (ScienceQA by category, ...)");
  add_config_args(cmd, args->config);
  cmd->add_option("--checkpoint", args->checkpoint, "adapter checkpoint directory");
  cmd->add_option("--task", args->task, "scienceqa | perplexity | loss | mcq | grounding (overrides eval.task)");
  cmd->add_option("--split", args->split, "test | val | minitest (overrides eval.split)");
  cmd->add_option("--limit", args->limit, "evaluate only the first N items");
  cmd->footer("Example:\n  mmtune eval --config configs/lavin/tiny.yaml --checkpoint runs/lavin-tiny/checkpoint-last "
              "--task scienceqa --split test");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      load_run_config(args->config);
      not_built_yet("eval", "issue #7: eval and chat");
    };
  });
}

}  // namespace mmtune::cli
