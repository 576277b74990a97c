// mmtune bench train|generate --config FILE [--steps N]
#include "commands.h"

namespace mmtune::cli {

void add_bench_command(CLI::App& app, Action& action) {
  struct Args {
    ConfigArgs config;
    std::string what;
    int64_t steps = 20;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("bench", "Measure train-step or generation throughput (JSON output)");
  cmd->add_option("what", args->what, "train | generate")->required()->check(CLI::IsMember({"train", "generate"}));
  add_config_args(cmd, args->config);
  cmd->add_option("--steps", args->steps, "measured steps after warm-up");
  cmd->footer("Example:\n  mmtune bench train --config configs/lavin/tiny.yaml --steps 20");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      load_run_config(args->config);
      not_built_yet("bench", "issue #10: benchmarks");
    };
  });
}

}  // namespace mmtune::cli
