// Several IAA workflows on one frozen base in one process (spec §2.1; `--adapter NAME=DIR` of
// `mmtune eval` and `mmtune chat`): the base LLM and ViT are built and loaded once, and every
// adapter directory becomes a workflow of the name the user gives it, whatever name it was
// trained under (llm.adapters.iaa_<trained name>.* in its file -> llm.adapters.iaa_<NAME>.*).
//
//   cfg   = config file + user overrides + workflow_overrides(specs[0])
//   built = build_model(cfg)                 builds workflow specs[0].name (fresh)
//   load_workflows(specs, config_for, cfg, built)   loads it, attaches and loads the others
//   adapters::select_workflow(llm, NAME)     per request ("text" = the bare LLM)
//
// The workflows share the vision tower and its feature spec (vision.feature / layer / image size
// / preprocessing), so those must agree; each keeps its own projector, embedding, norm, head and
// inserted layers.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/runtime/build_model.h>

namespace mmtune::runtime {

struct WorkflowSpec {
  std::string name;  // the workflow's name in this process (/workflow NAME, --workflow NAME)
  std::string dir;   // an IAA adapter directory (adapter_config.json + adapter_model.safetensors)
};

/// "NAME=DIR" -> {NAME, DIR}. NAME: letters, digits and '_', not "text" or "auto" (reserved by
/// chat and eval). Throws UsageError with the expected form.
WorkflowSpec parse_workflow_spec(const std::string& arg);

/// Every "NAME=DIR" of a repeated --adapter, parsed; `with_checkpoint`: --checkpoint was given too,
/// which --adapter excludes (UsageError).
std::vector<WorkflowSpec> parse_workflow_specs(const std::vector<std::string>& args, bool with_checkpoint);

/// The config overrides that make build_model build spec's workflow: the directory's
/// adapter_overrides (adapter.family=iaa, its options, its visual settings) and
/// adapter.iaa.workflow=NAME. Throws CheckpointError when the directory holds no IAA adapter.
std::vector<std::string> workflow_overrides(const WorkflowSpec& spec);

/// Loads every spec into built's LLM: workflows already attached (build_model made specs[0]'s)
/// are loaded, the others attached first, from config_for(spec) (the run's config with
/// workflow_overrides(spec) applied). Checks: names unique, each workflow's visual settings equal
/// `cfg`'s (shared vision tower), base shapes, every tensor. The loaded workflows are frozen
/// (requires_grad false): this is serving. Throws UsageError / CheckpointError naming the spec.
void load_workflows(const std::vector<WorkflowSpec>& specs,
                    const std::function<config::RunConfig(const WorkflowSpec&)>& config_for,
                    const config::RunConfig& cfg, BuiltModel& built);

}  // namespace mmtune::runtime
