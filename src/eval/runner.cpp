#include <mmtune/adapters/registry.h>
#include <mmtune/adapters/workflows.h>
#include <mmtune/config/load.h>
#include <mmtune/config/run_dir.h>
#include <mmtune/core/atomic_file.h>
#include <mmtune/core/dist_env.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/eval/runner.h>
#include <mmtune/model/quantize.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/checkpoint.h>
#include <mmtune/runtime/workflows.h>
#include <mmtune/text/tokenizer.h>

#include <chrono>
#include <filesystem>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace mmtune::eval {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_adapter_config(const std::string& dir) {
  const std::string text = read_checkpoint_file(fs::path(dir) / runtime::kAdapterConfigFile,
                                                "check the --checkpoint path", kMaxMetadataFileBytes);
  try {
    return json::parse(text);
  } catch (const json::exception&) {
    return json::object();  // adapter_overrides already reported a malformed file
  }
}

// The config: file, the user's overrides, the checkpoint's architecture, then the eval flags.
// `arch`: the checkpoint's adapter_overrides (or workflow_overrides), empty without one;
// `adapter_dir` names it in errors.
config::RunConfig resolve_config(const EvalRunOptions& o, const std::string& adapter_dir,
                                 const std::vector<std::string>& arch) {
  std::vector<std::string> flags;
  if (!o.task.empty()) flags.push_back("eval.task=" + o.task);
  if (!o.split.empty()) flags.push_back("eval.split=" + o.split);
  if (!o.data.empty()) flags.push_back("eval.data=" + o.data);
  if (!o.unparsable.empty()) flags.push_back("eval.unparsable=" + o.unparsable);
  if (o.limit >= 0) flags.push_back(cat("eval.limit=", o.limit));
  if (o.batch_size >= 0) flags.push_back(cat("eval.batch_size=", o.batch_size));
  std::vector<std::string> overrides = o.overrides;
  overrides.insert(overrides.end(), flags.begin(), flags.end());
  const auto& families = adapters::builtin_adapters();
  config::RunConfig cfg = config::load_config(o.config_path, overrides, families);
  if (arch.empty()) return cfg;

  const std::string family = arch.front().substr(std::string("adapter.family=").size());
  if (cfg.adapter.family != "none" && cfg.adapter.family != family) {
    throw CheckpointError((fs::path(adapter_dir) / runtime::kAdapterConfigFile).string(),
                          "holds a '" + family + "' adapter, but the config builds adapter.family '" + cfg.adapter.family + "'",
                          "evaluate with the config the adapter was trained with (adapter.family: " + family + ")");
  }
  overrides = o.overrides;
  overrides.insert(overrides.end(), arch.begin(), arch.end());
  overrides.insert(overrides.end(), flags.begin(), flags.end());
  return config::load_config(o.config_path, overrides, families);
}

// "test" for a split task, else the stem of the task file.
std::string run_label(const EvalTask& task, const config::RunConfig& cfg) {
  if (task.uses_split()) return cfg.eval.split;
  const std::string stem = fs::path(cfg.eval.data).stem().string();
  return stem.empty() ? "data" : stem;
}

// Warns when the adapter was made on a base of another name (shapes are checked by load_adapter).
void check_base_id(const std::string& adapter_dir, const config::RunConfig& cfg) {
  const json j = read_adapter_config(adapter_dir);
  const std::string trained_on = j.value("base_model", json::object()).value("id", std::string());
  const std::string here = cfg.model.id.empty() ? fs::path(cfg.model.path).filename().string() : cfg.model.id;
  if (!trained_on.empty() && trained_on != here)
    log::warn() << "the adapter was trained on base '" << trained_on << "', this model is '" << here
                << "' (same shapes, so it loads; check that this is the base you mean)";
}

}  // namespace

namespace {

// Device (cuda -> cuda:LOCAL_RANK under a launcher) and the process group.
std::unique_ptr<runtime::ProcessGroup> join_process_group(EvalEnv& env) {
  const DistEnv d = DistEnv::from_env();
  torch::Device device = model::model_options(env.cfg.device, env.cfg.dtype).device();
  if (d.launched && device.is_cuda() && !device.has_index()) {
    env.cfg.device = "cuda:" + std::to_string(d.local_rank);
    device = model::model_options(env.cfg.device, env.cfg.dtype).device();
  }
  env.device = device;
  std::unique_ptr<runtime::ProcessGroup> pg;
  if (d.launched && d.world_size > 1)
    pg = runtime::ProcessGroup::create(d, env.cfg.dist.backend, device.is_cuda(), std::chrono::seconds(env.cfg.dist.timeout_s));
  env.pg = pg.get();
  env.rank = pg ? pg->rank() : 0;
  env.world = pg ? pg->size() : 1;
  return pg;
}

// What --adapter / --workflow ask for.
struct Serving {
  std::vector<runtime::WorkflowSpec> specs;  // --adapter NAME=DIR, DIR resolved
  std::string workflow;                    // "" = the model's default
  std::function<config::RunConfig(const runtime::WorkflowSpec&)> config_for;
};

// Base + adapter in eval mode, the tokenizer and the sequence layout, into env.
void load_model(EvalEnv& env, const Serving& sv, runtime::BuiltModel& built, std::shared_ptr<const text::Tokenizer>& tok) {
  // a fresh adapter (no --checkpoint) is initialised alike on every rank
  torch::manual_seed(static_cast<uint64_t>(env.cfg.seed));
  built = runtime::build_model(env.cfg, runtime::Weights::kLoad);
  if (!sv.specs.empty()) {
    for (const auto& spec : sv.specs) check_base_id(spec.dir, env.cfg);
    runtime::load_workflows(sv.specs, sv.config_for, env.cfg, built);
    std::vector<std::string> names;
    for (const auto& spec : sv.specs) names.push_back(spec.name + "=" + spec.dir);
    log::info() << "IAA workflows on one base: " << join(names, ", ");
  } else if (!env.checkpoint.empty()) {
    check_base_id(env.checkpoint, env.cfg);
    runtime::load_adapter(env.checkpoint, env.cfg, built);
    log::info() << "adapter " << env.checkpoint << " (" << env.cfg.adapter.family << ")";
  } else {
    log::info() << "no --checkpoint: evaluating the base model with a freshly initialised " << env.cfg.adapter.family
                << " adapter (seed " << env.cfg.seed << ")";
  }
  built.model->eval();
  for (auto& [name, t] : built.trainable) t.requires_grad_(false);
  // eval never trains: each int4 weight held once, in the kernel's layout
  model::pack_for_inference(*built.model, built.model->llm().options().dtype().toScalarType());  // LLM and ViT
  if (!sv.workflow.empty()) {
    adapters::select_workflow(built.model->llm(), sv.workflow);
    log::info() << "workflow: " << sv.workflow;
  }
  tok = text::load_tokenizer(env.cfg.model.tokenizer.empty() ? env.cfg.model.path : env.cfg.model.tokenizer);
  env.built = &built;
  env.tok = tok;
  env.layout = runtime::sequence_layout(env.cfg, built);
}

// --output, else <adapter dir or output_dir>/eval-<task>-<split>/results.json ("" for a bare model).
std::string results_path_for(const EvalRunOptions& o, const EvalTask& task, const EvalEnv& env) {
  if (!o.output.empty() || o.config_path.empty()) return o.output;
  const fs::path base = env.checkpoint.empty() ? fs::path(env.cfg.output_dir) : fs::path(env.checkpoint);
  return (base / ("eval-" + task.name() + "-" + run_label(task, env.cfg)) / "results.json").string();
}

}  // namespace

namespace {

// The task of --task, checked before anything is loaded (null: the config's eval.task, later).
std::unique_ptr<EvalTask> task_from_options(const EvalRunOptions& o) {
  std::unique_ptr<EvalTask> task;
  if (!o.task.empty()) task = make_eval_task(o.task);
  if (o.config_path.empty() && (!task || task->name() != "perplexity"))
    throw UsageError("--config is required for --task " + (o.task.empty() ? std::string("scienceqa") : o.task),
                     "only --task perplexity runs on a bare --model");
  if (!o.config_path.empty() && !o.model.empty())
    throw UsageError("--model is for --task perplexity without --config", "set model.path=DIR instead");
  return task;
}

// The config of a bare model directory (--task perplexity --model DIR).
config::RunConfig bare_model_config(const EvalRunOptions& o) {
  if (!o.overrides.empty())
    throw UsageError("key=value overrides need --config (got " + o.overrides.front() + ")",
                     "a bare --model takes --device, --dtype, --quantize, --quant-group and --quant-fallback");
  config::RunConfig cfg;
  cfg.model.path = o.model;
  cfg.model.quantize = o.quantize.empty() ? "none" : o.quantize;
  if (o.quant_group > 0) cfg.model.quant_group = o.quant_group;
  if (!o.quant_fallback.empty()) cfg.model.quant_fallback = o.quant_fallback;
  cfg.device = o.device;
  cfg.dtype = o.dtype;
  cfg.eval.task = "perplexity";
  cfg.eval.data = o.data;
  return cfg;
}

// The adapter(s) to evaluate (--checkpoint, or --adapter NAME=DIR workflows) into env.checkpoint and
// sv, and the run config: the --config with the adapter's architecture keys on top.
void resolve_adapters_and_config(const EvalRunOptions& o, EvalEnv& env, Serving& sv) {
  env.checkpoint = o.checkpoint.empty() ? std::string() : runtime::resolve_adapter_dir(o.checkpoint);
  std::vector<std::string> arch = env.checkpoint.empty() ? std::vector<std::string>{} : runtime::adapter_overrides(env.checkpoint);
  // the directory whose adapter_config.json `arch` came from (named in config errors)
  std::string arch_dir = env.checkpoint;
  if (!o.adapters.empty()) {
    sv.specs = runtime::parse_workflow_specs(o.adapters, !o.checkpoint.empty());
    if (o.config_path.empty()) throw UsageError("--adapter needs --config", "the config names the base model");
    for (auto& spec : sv.specs) spec.dir = runtime::resolve_adapter_dir(spec.dir);
    sv.workflow = o.workflow.empty() ? sv.specs.front().name : o.workflow;
    // results go next to the evaluated workflow's adapter (the first one for "text")
    env.checkpoint = sv.specs.front().dir;
    for (const auto& spec : sv.specs)
      if (spec.name == sv.workflow) env.checkpoint = spec.dir;
    arch = runtime::workflow_overrides(sv.specs.front());
    arch_dir = sv.specs.front().dir;
    sv.config_for = [&o](const runtime::WorkflowSpec& spec) {
      return resolve_config(o, spec.dir, runtime::workflow_overrides(spec));
    };
  } else {
    sv.workflow = o.workflow;
  }
  env.cfg = o.config_path.empty() ? bare_model_config(o) : resolve_config(o, arch_dir, arch);
}

// results.json with the run's timing, written atomically by rank 0.
void write_results(const std::string& path, const EvalRunSummary& s, const EvalEnv& env) {
  json j = json::parse(s.report.results_json);
  j["timing"] = {{"seconds", s.seconds},
                 {"items", s.report.items},
                 {"unit", s.report.unit},
                 {"items_per_s", s.seconds > 0 ? static_cast<double>(s.report.items) / s.seconds : 0.0},
                 {"batch_size", s.batch_size},
                 {"world_size", s.world},
                 {"device", env.cfg.device}};
  write_file_atomically(path, j.dump(2) + "\n", "check the directory, free space and permissions (--output)");
}

}  // namespace

EvalRunSummary run_eval(const EvalRunOptions& o) {
  std::unique_ptr<EvalTask> task = task_from_options(o);
  EvalEnv env;
  Serving sv;
  resolve_adapters_and_config(o, env, sv);
  if (!task) task = make_eval_task(env.cfg.eval.task);
  if (!o.split.empty() && !task->uses_split())
    throw UsageError("--split does not apply to --task " + task->name(), "it reads eval.data (--data FILE)");
  env.split = env.cfg.eval.split;
  env.limit = env.cfg.eval.limit;
  env.progress = o.progress;
  env.dump = o.dump;
  const auto pg = join_process_group(env);

  // the evaluation's own config.yaml and log go next to results.json
  const std::string results_path = results_path_for(o, *task, env);
  if (!results_path.empty() && !o.config_path.empty()) {
    config::RunConfig run_cfg = env.cfg;
    run_cfg.output_dir = fs::path(results_path).parent_path().string();
    if (run_cfg.output_dir.empty()) run_cfg.output_dir = ".";
    config::prepare_run_dir(run_cfg, env.rank);
  }
  runtime::BuiltModel built;
  std::shared_ptr<const text::Tokenizer> tok;
  if (task->needs_model()) load_model(env, sv, built, tok);

  const auto t0 = std::chrono::steady_clock::now();
  EvalRunSummary s;
  s.report = task->run(env);
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  s.world = env.world;
  s.batch_size = env.cfg.eval.batch_size;
  s.adapter_dir = env.checkpoint;
  s.workflow = sv.workflow;
  if (env.rank == 0 && !results_path.empty() && !s.report.results_json.empty()) {
    write_results(results_path, s, env);
    s.results_path = results_path;
  }
  if (pg) pg->barrier();  // no rank exits (and tears down the store) while rank 0 still writes
  return s;
}

}  // namespace mmtune::eval
