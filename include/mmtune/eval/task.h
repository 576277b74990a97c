// The benchmark interface of `mmtune eval`: one EvalTask per benchmark, one .cpp each under
// src/eval/, listed once in make_eval_task (src/eval/task.cpp). The runner (eval/runner.h) loads the
// config, the base model and the adapter, joins the process group, and hands the task an EvalEnv;
// the task reads its items, runs its share of them (eval_batches), gathers the per-item records on
// rank 0 (gather_records) and returns the console text and the results.json text.
//   scienceqa   generated answers -> option index, table NAT SOC LAN TXT IMG NO G1-6 G7-12 Avg,
//               official results layout (eval/scienceqa_score.h)
//   loss        the training objective's mean token loss over a split, no update
//   mcq         a JSONL of yes/no and multiple-choice questions: accuracy, POPE metrics (eval/mcq.h)
//   grounding   a JSONL of referring expressions and boxes: precision@IoU 0.5 (eval/grounding.h)
//   perplexity  a text under the frozen base LLM (eval/perplexity.h)
// Determinism: items are cut into batches of eval.batch_size in the data's order and rank r of w
// takes batches r, r + w, ...; every batch holds the same items whatever the world size, so greedy
// outputs (and per-batch losses) are bitwise those of a single process.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/config/config.h>
#include <mmtune/data/batch.h>
#include <mmtune/runtime/generator.h>
#include <mmtune/text/tokenizer.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/distributed.h>

namespace mmtune::eval {

/// Everything a task may use. `built` is null for a task that loads its own model (perplexity
/// without --config).
struct EvalEnv {
  config::RunConfig cfg;                            // resolved: file + checkpoint's adapter + flags
  runtime::BuiltModel* built = nullptr;               // base + adapter, eval mode
  std::shared_ptr<const text::Tokenizer> tok;      // null when built is null
  data::SequenceLayout layout;                      // where the visual tokens go
  torch::Device device{torch::kCPU};
  runtime::ProcessGroup* pg = nullptr;                // null: one process
  int rank = 0;
  int world = 1;
  std::string split;                                // scienceqa / loss: the data split
  int64_t limit = 0;                                // > 0: first N items only
  std::string checkpoint;                           // adapter directory, "" = base model
  bool progress = true;                             // draw a progress bar (rank 0)
  std::string dump;                                 // perplexity: one JSON line per token, "" = none
};

/// What a task reports (rank 0; other ranks' reports are empty).
struct EvalReport {
  std::string console;       // printed to stdout
  std::string results_json;  // written to results.json; empty = no file
  int64_t items = 0;         // questions / samples / tokens evaluated (for the throughput line)
  std::string unit = "questions";
};

class EvalTask {
 public:
  virtual ~EvalTask() = default;
  /// "scienceqa", ...
  virtual std::string name() const = 0;
  /// True when the task evaluates a data split of data.* (--split applies); false when it reads
  /// its own file (eval.data).
  virtual bool uses_split() const = 0;
  /// True when the runner must build base + adapter before run(); perplexity may run without.
  virtual bool needs_model() const { return true; }
  /// Runs on every rank (collectives inside); throws mmtune::Error with a hint on bad input.
  virtual EvalReport run(EvalEnv& env) = 0;
};

/// The built-in tasks, one file each (src/eval/<name>_eval.cpp).
std::unique_ptr<EvalTask> make_scienceqa_task();
std::unique_ptr<EvalTask> make_loss_task();
std::unique_ptr<EvalTask> make_mcq_task();
std::unique_ptr<EvalTask> make_grounding_task();
std::unique_ptr<EvalTask> make_perplexity_task();

/// The registered task names, in help order.
const std::vector<std::string>& eval_task_names();

/// The task called `name`. Throws mmtune::UsageError listing the tasks (and a close match).
std::unique_ptr<EvalTask> make_eval_task(const std::string& name);

// ---- helpers shared by the tasks (src/eval/runner.cpp) ------------------------------------------

/// The [begin, end) item ranges of this rank: `n` items cut into batches of `batch_size` in order,
/// batch i going to rank i % world. Pure function (unit-tested).
std::vector<std::pair<int64_t, int64_t>> rank_batches(int64_t n, int64_t batch_size, int rank, int world);

/// Calls fn(batch_index, begin, end) for each of this rank's batches (rank_batches with
/// env.cfg.eval.batch_size), drawing progress on rank 0 ("<label> 12/40 batches, 3.1 q/s, ETA").
/// Checks for Ctrl-C between batches.
void eval_batches(const EvalEnv& env, int64_t n, const std::string& label,
                  const std::function<void(int64_t batch, int64_t begin, int64_t end)>& fn);

/// Every rank's strings, concatenated in rank order, on rank 0 (others get an empty list). All
/// ranks must call it. Bytes travel as zero-padded int32 rows summed over the process group.
std::vector<std::string> gather_records(const EvalEnv& env, const std::vector<std::string>& mine);

/// Sampling options from eval.generation; the seed is offset by `batch` so a sampled answer does
/// not depend on which rank ran its batch.
runtime::SamplingOptions sampling_options(const config::GenerationConfig& g, int64_t batch);

/// Greedy / sampled answers for `examples` (answers cleared, so collate lays them out as left-padded
/// prompts), in order. Throws DataError for an unreadable image (collate).
std::vector<runtime::Generation> generate_answers(const EvalEnv& env, std::vector<data::Example> examples,
                                                   int64_t batch);

/// A generation Example for one question in the prompt style of the model's data config:
///   data.format scienceqa (LaVIN): with choices, LaVIN's prompt (data.prompt_format's input part,
///     context "N/A"; data/prompt.h); without, "Instruction: {question}\nResponse:" (LaVIN's chatbot
///     format, spec §1.10); the image goes where collate puts it ("Image: " prefix)
///   otherwise: data.template over one user turn "<image>\n{question}" (the placeholder only with
///     an image), with choices listed as "A. c0\nB. c1\n..." and LLaVA's
///     "Answer with the option's letter from the given choices directly."
/// `image` is a resolved path or "" (text-only).
data::Example question_example(const EvalEnv& env, const std::string& id, const std::string& image,
                               const std::string& question, const std::vector<std::string>& choices);

/// A reproducible pseudo-random integer in [0, n) from (seed, key): the same for a question
/// whatever the rank, batch size or order (FNV-1a of the key mixed with the seed, splitmix64).
int64_t seeded_choice(uint64_t seed, const std::string& key, int64_t n);

}  // namespace mmtune::eval
