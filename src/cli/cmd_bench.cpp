// mmtune bench train|generate --config FILE [--steps N] [--warmup W] [--json OUT] [key.sub=value ...]
// The measuring is bench/bench.h's; this verb parses flags, prints the JSON report on stdout (and
// to --json) and a one-line summary in the log.
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/bench/bench.h>

#include <fstream>
#include <iostream>

#include "commands.h"

namespace mmtune::cli {

void add_bench_command(CLI::App& app, Action& action) {
  struct Args {
    ConfigArgs config;
    std::string what, json;
    bench::BenchOptions bench;
  };
  auto args = std::make_shared<Args>();
  auto& o = args->bench;
  auto* cmd = app.add_subcommand("bench", "Measure train-step or generation throughput (JSON report)");
  cmd->add_option("what", args->what, "train | generate")->required()->check(CLI::IsMember({"train", "generate"}));
  add_config_args(cmd, args->config);
  cmd->add_option("--steps", o.steps, "measured steps (train) or generations (generate)")->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o.warmup, "untimed steps or generations first")->check(CLI::NonNegativeNumber);
  cmd->add_option("--json", args->json, "also write the report to this file");
  cmd->add_option("--batch", o.batch, "rows per step; default train.micro_batch_size / eval.batch_size")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--min-length", o.min_length, "synthetic rows: shortest length (longest: data.max_length)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--prompt-length", o.prompt_length, "generate: tokens per prompt, image slots included")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--new-tokens", o.new_tokens, "generate: tokens per row; default eval.generation.max_new_tokens")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--random-weights", o.random_weights,
                "random frozen weights of the config's shapes (config.json or model.arch / vision.arch): no checkpoint read");
  cmd->add_flag("--data", o.use_data, "train: batches of the configured data set instead of synthetic ones");
  cmd->add_option("--peak-tflops", o.peak_tflops, "peak TFLOP/s for MFU; default: a table of known GPUs, none on CPU")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--threads", o.threads, "torch intra-op threads; default: torch's (OMP_NUM_THREADS or all cores)")
      ->check(CLI::PositiveNumber);
  cmd->footer(
      "Examples:\n"
      "  mmtune bench train --config configs/lavin/tiny.yaml --steps 20 --json bench.json\n"
      "  mmtune bench train --config configs/lavin/scienceqa-7b.yaml --random-weights model.arch=llama-7b "
      "vision.arch=clip-vit-l14 device=cuda dtype=bf16\n"
      "  mmtune bench generate --config configs/lavin/tiny.yaml --batch 8 --new-tokens 32\n"
      "scripts/bench_compare.sh runs the same batches through scripts/bench_reference.py (eager PyTorch).");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      const auto cfg = load_run_config(args->config);
      const bench::BenchReport r = args->what == "train" ? bench::bench_train(cfg, args->bench)
                                                         : bench::bench_generate(cfg, args->bench);
      const std::string json = bench::bench_json(r);
      std::cout << json << "\n";
      if (!args->json.empty()) {
        std::ofstream f(args->json);
        if (!(f << json << "\n")) throw Error("cannot write " + args->json, "check that its directory exists");
      }
      log::info() << "bench " << r.mode << ": " << r.tokens_per_s << " tok/s, " << r.samples_per_s << " samples/s, step p50 "
                  << r.step_s_p50 * 1e3 << " ms (p90 " << r.step_s_p90 * 1e3 << " ms), " << r.threads << " threads";
      return 0;
    };
  });
}

}  // namespace mmtune::cli
