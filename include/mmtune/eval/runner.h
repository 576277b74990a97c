// `mmtune eval` without the command line: config (+ the checkpoint's adapter options) -> process
// group -> base model + adapter -> the task (eval/task.h) -> console table and results.json.
//
// The model has the checkpoint's architecture: adapter_config.json's family, family options and
// vision keys are applied as overrides after the config file and the user's overrides, so only the
// paths (model.path, vision.path, data.*) and eval.* come from the config. The config's own
// adapter.family must be the checkpoint's (or none): a LaVIN config does not silently evaluate a
// MoLE checkpoint. load_adapter then checks the base shapes and every tensor.
//
// results.json goes to --output; by default <adapter dir>/eval-<task>-<split>/results.json with a
// checkpoint, else <output_dir>/eval-<task>-<split>/results.json (for mcq / grounding / perplexity
// the "split" is the stem of eval.data). Rank 0 writes it (temp file + rename) next to the resolved
// config.yaml and mmtune.log of the evaluation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mmtune/eval/task.h>

namespace mmtune::eval {

struct EvalRunOptions {
  std::string config_path;             // --config; "" only for perplexity with --model
  std::vector<std::string> overrides;  // key.sub=value after the file
  std::string checkpoint;              // adapter directory, or a training output_dir (latest checkpoint-*)
  // --adapter NAME=DIR, repeated: IAA workflows served together on one base (runtime/workflows.h),
  // each DIR resolved like --checkpoint; excludes --checkpoint
  std::vector<std::string> adapters;
  std::string workflow;                // the workflow evaluated: "" = the first --adapter (or the
                                       // checkpoint's); "text" = the bare LLM of an IAA model
  std::string task;                    // "" = eval.task
  std::string split;                   // "" = eval.split
  std::string data;                    // "" = eval.data (mcq / grounding JSONL, perplexity text)
  std::string unparsable;              // "" = eval.unparsable
  int64_t limit = -1;                  // < 0 = eval.limit
  int64_t batch_size = -1;             // < 0 = eval.batch_size
  std::string output;                  // results.json path; "" = the default above
  // perplexity of a bare model without --config
  std::string model, device = "cpu", dtype = "fp32", dump;
  std::string quantize, quant_fallback;  // bare --model: model.quantize / quant_fallback (empty: default)
  int64_t quant_group = 0;               // bare --model: model.quant_group (0: default)
  bool progress = true;
};

struct EvalRunSummary {
  EvalReport report;         // rank 0's
  std::string results_path;  // "" when no file was written (or not rank 0)
  std::string adapter_dir;   // the resolved checkpoint, "" = base model
  std::string workflow;      // the IAA workflow evaluated; "" = the model's default
  double seconds = 0;        // the task's run time (model loading excluded)
  int world = 1;
  int64_t batch_size = 0;
};

/// Runs one evaluation. Launched under torchrun (RANK / WORLD_SIZE set) it joins the process group
/// (dist.backend, dist.timeout_s) and evaluates its share; rank 0 gathers, prints and writes.
/// Throws UsageError (unknown task, flags that do not apply), ConfigError, CheckpointError (family
/// or base mismatch, missing files), DataError (unknown split, unreadable data).
EvalRunSummary run_eval(const EvalRunOptions& options);

}  // namespace mmtune::eval
