// The model chat and serve run: --config, then --checkpoint's (or each --adapter workflow's)
// adapter options, then the user's overrides; built, its adapters loaded, in eval mode.
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/model/quantize.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/runtime/workflows.h>

#include "commands.h"

namespace mmtune::cli {
namespace {

// The config file, then the checkpoint's adapter options, then the user's overrides. A checkpoint
// of another family than the config's is an error: the config's data and vision settings are the
// family's (template, preprocessing), so silently switching families would mislead.
// `front`: the checkpoint's adapter_overrides, or a workflow's workflow_overrides; `dir` names it.

config::RunConfig adapter_config_with(const AdapterArgs& a, std::vector<std::string> front, const std::string& dir) {
  config::RunConfig cfg = load_run_config(a.config);
  if (front.empty()) return cfg;
  const std::string key = "adapter.family=";
  for (const auto& o : front) {
    if (o.rfind(key, 0) != 0 || o.substr(key.size()) == cfg.adapter.family) continue;
    const std::string family = o.substr(key.size());
    throw CheckpointError(dir + "/" + runtime::kAdapterConfigFile,
                          "holds a '" + family +
                              "' adapter, but the config builds adapter.family '" +
                              cfg.adapter.family + "'",
                          "use a " + family + " config (configs/" + family +
                              "/...), or add adapter.family=" + family);
  }
  const auto user = a.config.all_overrides();
  front.insert(front.end(), user.begin(), user.end());
  return config::load_config(a.config.path, front, adapters::builtin_adapters());
}

std::vector<runtime::WorkflowSpec> adapter_workflow_specs(const AdapterArgs& a) {
  auto specs = runtime::parse_workflow_specs(a.adapters, !a.checkpoint.empty());
  for (auto& s : specs) s.dir = runtime::resolve_adapter_dir(s.dir);  // as eval: an output_dir = its latest checkpoint
  return specs;
}

}  // namespace

config::RunConfig adapter_run_config(const AdapterArgs& a) {
  const auto specs = adapter_workflow_specs(a);
  if (!specs.empty()) return adapter_config_with(a, runtime::workflow_overrides(specs.front()), specs.front().dir);
  if (a.checkpoint.empty()) return adapter_config_with(a, {}, "");
  return adapter_config_with(a, runtime::adapter_overrides(a.checkpoint), a.checkpoint);
}

runtime::BuiltModel build_adapted_model(const AdapterArgs& a, const config::RunConfig& cfg,
                                      std::vector<std::string>& served) {
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));  // fresh adapters (no --checkpoint) are initialised alike every run
  runtime::BuiltModel built = runtime::build_model(cfg, runtime::Weights::kLoad);
  if (!a.checkpoint.empty()) runtime::load_adapter(a.checkpoint, cfg, built);
  const auto specs = adapter_workflow_specs(a);
  if (!specs.empty()) {
    runtime::load_workflows(
        specs, [&a](const runtime::WorkflowSpec& s) { return adapter_config_with(a, runtime::workflow_overrides(s), s.dir); },
        cfg, built);
    for (const auto& s : specs) served.push_back(s.name + "=" + s.dir);
  }
  built.model->eval();
  // chat and serve never train: each int4 weight held once, in the kernel's layout
  model::pack_for_inference(*built.model, built.model->llm().options().dtype().toScalarType());  // LLM and ViT
  return built;
}

}  // namespace mmtune::cli
