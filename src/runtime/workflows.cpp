#include <mmtune/adapters/registry.h>
#include <mmtune/adapters/workflows.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/workflows.h>

#include <filesystem>
#include <set>

namespace mmtune::runtime {
namespace {

namespace fs = std::filesystem;

const std::string kFamilyKey = "adapter.family=";

// The vision settings one shared tower and feature spec serve; a workflow must not differ in them.
std::vector<std::pair<std::string, std::string>> shared_visual(const config::VisionConfig& v) {
  return {{"feature", v.feature},
          {"cls_every", cat(v.cls_every)},
          {"layer", cat(v.layer)},
          {"image_size", cat(v.image_size)},
          {"preprocess", v.preprocess},
          {"interpolation", v.interpolation},
          {"norm", v.norm},
          {"start_end_tokens", v.start_end_tokens ? "true" : "false"}};
}

}  // namespace

WorkflowSpec parse_workflow_spec(const std::string& arg) {
  const size_t eq = arg.find('=');
  const std::string hint = "--adapter NAME=DIR, e.g. --adapter caption=runs/iaa-caption/checkpoint-last";
  if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size())
    throw UsageError("--adapter '" + arg + "' is not NAME=DIR", hint);
  WorkflowSpec s{arg.substr(0, eq), arg.substr(eq + 1)};
  for (char c : s.name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_'))
      throw UsageError("--adapter name '" + s.name + "' may hold letters, digits and '_' only", hint);
  }
  if (s.name == adapters::kTextWorkflow || s.name == "auto")
    throw UsageError("--adapter name '" + s.name + "' is reserved ('text' is the bare LLM, 'auto' picks by the input)",
                     "name the workflow after what it does, e.g. mm, caption, grounding");
  return s;
}

std::vector<WorkflowSpec> parse_workflow_specs(const std::vector<std::string>& args, bool with_checkpoint) {
  if (!args.empty() && with_checkpoint)
    throw UsageError("--checkpoint and --adapter do not go together",
                     "--checkpoint DIR loads one adapter; --adapter NAME=DIR (repeated) serves IAA workflows");
  std::vector<WorkflowSpec> specs;
  for (const auto& a : args) specs.push_back(parse_workflow_spec(a));
  return specs;
}

std::vector<std::string> workflow_overrides(const WorkflowSpec& spec) {
  std::vector<std::string> out = adapter_overrides(spec.dir);  // throws for a missing / malformed config
  const std::string family = out.front().substr(kFamilyKey.size());
  const adapters::FamilyEntry* entry = adapters::builtin_adapters().find(family);
  if (!entry || !entry->serves_workflows) {
    const std::vector<std::string> with =
        adapters::builtin_adapters().family_names([](const adapters::FamilyEntry& e) { return e.serves_workflows; });
    throw CheckpointError((fs::path(spec.dir) / kAdapterConfigFile).string(),
                          "holds a '" + family + "' adapter; --adapter " + spec.name + "=... serves workflows of " +
                              join(with, ", ") + " adapters",
                          "load a single " + family + " adapter with --checkpoint DIR");
  }
  out.push_back(adapters::kWorkflowOverride + spec.name);
  return out;
}

void load_workflows(const std::vector<WorkflowSpec>& specs,
                    const std::function<config::RunConfig(const WorkflowSpec&)>& config_for,
                    const config::RunConfig& cfg, BuiltModel& built) {
  std::set<std::string> seen;
  auto& llm = built.model->llm();
  const auto visual = shared_visual(cfg.vision);
  for (const auto& spec : specs) {
    if (!seen.insert(spec.name).second)
      throw UsageError("--adapter " + spec.name + "=... is given twice", "give each workflow its own name");
    const config::RunConfig wcfg = config_for(spec);
    const auto theirs = shared_visual(wcfg.vision);
    for (size_t i = 0; i < visual.size(); ++i) {
      if (theirs[i].second != visual[i].second)
        throw CheckpointError((fs::path(spec.dir) / kAdapterConfigFile).string(),
                              "wants vision." + theirs[i].first + " " + theirs[i].second + ", the first --adapter's is " +
                                  visual[i].second,
                              "the workflows of one process share the vision tower and its features; serve this one "
                              "in a process of its own");
    }
    if (!adapters::find_workflow(llm, spec.name)) {
      adapters::attach_workflow(
          llm, wcfg.adapter, spec.name,
          adapters::VisualPath{built.model->has_vision() ? built.model->vision().config().hidden_size : 0,
                               wcfg.vision.projector, wcfg.vision.projector_hidden,
                               wcfg.vision.start_end_tokens});
    }
    // the workflow's tensors under the names its file has them
    const std::string ours = adapters::workflow_tensor_prefix(spec.name);
    const std::string in_file = adapters::workflow_tensor_prefix(adapters::workflow_in(adapter_overrides(spec.dir)));
    std::vector<std::pair<std::string, torch::Tensor>> targets;
    for (const auto& p : built.model->named_parameters(true)) {
      if (p.key().rfind(ours, 0) == 0) targets.emplace_back(in_file + p.key().substr(ours.size()), p.value());
    }
    load_adapter_into(spec.dir, cfg, built, targets);
    for (auto& [name, t] : targets) t.requires_grad_(false);
  }
}

}  // namespace mmtune::runtime
