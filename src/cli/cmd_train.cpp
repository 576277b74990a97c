// mmtune train --config FILE [key.sub=value ...] [--dry-run] [--resume [DIR]]
#include <mmtune/core/memory.h>
#include <mmtune/core/logging.h>
#include <mmtune/train/dry_run.h>
#include <mmtune/train/memory_estimate.h>
#include <mmtune/train/metrics.h>
#include <mmtune/train/run_train.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "commands.h"

namespace mmtune::cli {

void add_train_command(CLI::App& app, Action& action) {
  struct Args {
    ConfigArgs config;
    bool dry_run = false;
    std::string resume;
    bool overwrite = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("train", "Tune an adapter on frozen backbones (data-parallel under torchrun)");
  add_config_args(cmd, args->config);
  cmd->add_flag("--dry-run", args->dry_run, "build the model on the meta device; print the trainable parameters and the estimated peak memory per dtype / quantize");
  cmd->add_option("--resume", args->resume, "resume from the latest checkpoint in output_dir, or from DIR")
      ->expected(0, 1)
      ->default_str("latest");
  cmd->add_flag("--overwrite", args->overwrite,
                "start afresh in an output_dir that holds an earlier run: delete its checkpoint-<step> directories "
                "and metrics.jsonl first (without it such a directory is refused)");
  cmd->footer("Examples:\n  mmtune train --config configs/lavin/tiny.yaml train.epochs=2\n"
              "  torchrun --nproc-per-node 2 --no-python mmtune train --config configs/scienceqa.yaml");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      const auto cfg = load_run_config(args->config);  // config problems surface now, before anything is built
      if (args->dry_run) {
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t baseline = std::max<int64_t>(current_rss_bytes(), 0);  // before the meta builds (no memory)
        std::cout << train::format_dry_run(train::dry_run(cfg));
        std::cout << train::format_memory_estimates(train::estimate_memory(cfg, baseline), cfg);
        log::info() << "dry run (meta device, no weights read) in "
                    << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s";
        return 0;
      }
      train::TrainRunOptions opts;
      opts.resume = args->resume;
      opts.overwrite = args->overwrite;
      const auto s = train::run_training(cfg, opts);
      const auto& r = s.result;
      log::info() << "done: " << r.steps << " steps (" << r.skipped_steps << " skipped as non-finite), "
                  << s.trainable_parameters << " trainable parameters, " << s.samples << " samples, "
                  << s.seconds << " s" << (r.last_checkpoint.empty() ? "" : ", last checkpoint " + r.last_checkpoint);
      return 0;
    };
  });
}

}  // namespace mmtune::cli
