// The training objective over a split, without an update: sum of supervised token cross-entropies /
// supervised tokens, exactly as runtime::MultimodalTask computes it for the trainer (same collate,
// same labels, model in eval mode so dropout is off). Auxiliary losses (MoLE's balancing) are
// reported beside it as a mean over batches, not added. For validation curves of a finished run
// and for cross-checks against the trainer's val_loss.
// Per-batch sums are gathered and added on rank 0 in batch order, so the number is bitwise the
// same for any world size.
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/data/collate.h>
#include <mmtune/data/dataset.h>
#include <mmtune/eval/task.h>
#include <mmtune/runtime/multimodal_task.h>

#include <cmath>
#include <iomanip>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

namespace mmtune::eval {
namespace {

using json = nlohmann::json;

EvalReport loss_report(const EvalEnv& env, const std::vector<std::string>& records, const std::string& source) {
  std::map<int64_t, json> by_batch;  // batch order, whatever rank ran it
  for (const auto& r : records) {
    json j = json::parse(r);
    const auto batch = j["batch"].get<int64_t>();  // read before the move (json's operator= takes its argument by value)
    by_batch[batch] = std::move(j);
  }
  double sum = 0;
  int64_t tokens = 0, samples = 0, truncated = 0;
  std::map<std::string, double> aux;
  for (const auto& [b, j] : by_batch) {
    sum += j["loss_sum"].is_null() ? NAN : j["loss_sum"].get<double>();  // JSON writes NaN as null
    tokens += j["tokens"].get<int64_t>();
    samples += j["samples"].get<int64_t>();
    truncated += j["truncated"].get<int64_t>();
    for (const auto& [k, v] : j["aux"].items())
      aux[k] += (v.is_null() ? NAN : v.get<double>()) / static_cast<double>(by_batch.size());
  }
  if (tokens == 0) throw DataError(source, "no supervised tokens in the split", "the samples need answers");
  const double mean = sum / static_cast<double>(tokens);

  std::ostringstream console;
  console << std::setprecision(8) << "loss " << mean << "\nperplexity " << std::exp(mean) << "\nsupervised_tokens "
          << tokens << "\nsamples " << samples << "\n";
  for (const auto& [k, v] : aux) console << "aux_" << k << " " << v << "\n";
  if (truncated > 0) console << truncated << " sample(s) cut at data.max_length " << env.cfg.data.max_length << "\n";
  json j{{"task", "loss"},
         {"split", env.split},
         {"loss", mean},
         {"perplexity", std::exp(mean)},
         {"loss_sum", sum},
         {"supervised_tokens", tokens},
         {"samples", samples},
         {"truncated", truncated},
         {"aux", aux},
         {"args",
          {{"checkpoint", env.checkpoint},
           {"limit", env.limit},
           {"batch_size", env.cfg.eval.batch_size},
           {"data_format", env.cfg.data.format},
           {"adapter_family", env.cfg.adapter.family},
           {"model", env.cfg.model.path}}}};
  EvalReport r;
  r.console = console.str();
  r.results_json = j.dump(2) + "\n";
  r.items = samples;
  r.unit = "samples";
  return r;
}

class LossTask final : public EvalTask {
 public:
  std::string name() const override { return "loss"; }
  bool uses_split() const override { return true; }

  EvalReport run(EvalEnv& env) override {
    auto split = data::read_split(env.cfg.data, env.layout, env.split, env.limit);
    const auto& examples = split.examples;
    if (examples.empty()) throw DataError(split.source, "no samples to evaluate", "check --split and --limit");
    if (env.rank == 0) log::info() << "loss: " << split.source << ", " << examples.size() << " samples";
    runtime::MultimodalTask task(*env.built, env.device);
    task.set_training(false);
    const auto copts = data::collate_options(env.cfg.data, env.cfg.vision);

    std::vector<std::string> records;
    eval_batches(env, static_cast<int64_t>(examples.size()), "loss", [&](int64_t batch, int64_t begin, int64_t end) {
      const std::vector<data::Example> chunk(examples.begin() + begin, examples.begin() + end);
      const auto b = data::collate(chunk, *env.tok, env.layout, copts);
      json r{{"batch", batch}, {"samples", b.size()}, {"tokens", b.supervised_tokens}, {"truncated", b.truncated},
             {"loss_sum", 0.0}, {"aux", json::object()}};
      if (b.size() > 0) {
        torch::NoGradGuard no_grad;
        const auto loss = task.forward(b);
        r["loss_sum"] = loss.loss_sum.item<double>();
        for (const auto& [name, value] : loss.aux) r["aux"][name] = value.item<double>();
      }
      records.push_back(r.dump());
    });
    const auto all = gather_records(env, records);
    if (env.rank != 0) return {};

    return loss_report(env, all, split.source);
  }
};

}  // namespace

std::unique_ptr<EvalTask> make_loss_task() { return std::make_unique<LossTask>(); }

}  // namespace mmtune::eval
