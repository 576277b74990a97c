#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/workflows.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

namespace mmtune::adapters {
namespace {

// Collects an option struct's problems as ConfigProblems (the options did not come from a file).
struct Collect final : config::Problems {
  std::vector<ConfigProblem> problems;
  void add(const std::string& key, std::string message, std::string hint) override {
    problems.push_back({"attach_workflow", key, std::move(message), std::move(hint)});
  }
};

}  // namespace

std::vector<torch::Tensor> attach_workflow(model::LlamaDecoderImpl& llm, const IaaConfig& options,
                                           const VisualPath& visual) {
  Collect c;
  options.validate(c, "adapter.iaa");
  if (!c.problems.empty()) throw ConfigError(std::move(c.problems));
  if (find_workflow(llm, options.workflow)) {
    throw Error("workflow '" + options.workflow + "' is attached twice",
                "give each workflow its own adapter.iaa.workflow name");
  }
  // the same path as build_model's (adapter.family: iaa), with these options
  config::AdapterConfig adapter;
  adapter.family = "iaa";
  adapter.options["iaa"] = options.clone();
  return attach_decoder(llm, adapter, visual);
}

std::vector<std::string> workflow_names(model::LlamaDecoderImpl& llm) {
  std::vector<std::string> names{kTextWorkflow};
  for (const auto& [name, a] : decoder_adapters(llm)) {
    if (auto* w = dynamic_cast<IaaDecoderAdapterImpl*>(a.get())) names.push_back(w->workflow());
  }
  return names;
}

IaaDecoderAdapterImpl* find_workflow(model::LlamaDecoderImpl& llm, const std::string& name) {
  for (const auto& [attached, a] : decoder_adapters(llm)) {
    auto* w = dynamic_cast<IaaDecoderAdapterImpl*>(a.get());
    if (w && w->workflow() == name) return w;
  }
  return nullptr;
}

void select_workflow(model::LlamaDecoderImpl& llm, const std::string& name) {
  DecoderAdapterImpl* chosen = nullptr;
  if (name != kTextWorkflow) {
    chosen = find_workflow(llm, name);
    if (!chosen) {
      throw UsageError("no workflow '" + name + "' in this model",
                       "workflows: " + join(workflow_names(llm), ", ") + " (load one with --adapter NAME=DIR)");
    }
  }
  for (const auto& [attached, a] : decoder_adapters(llm)) a->set_enabled(a.get() == chosen);
}

std::string active_workflow(model::LlamaDecoderImpl& llm) {
  DecoderAdapterImpl* active = llm.active_decoder_adapter();
  if (!active) return kTextWorkflow;
  for (const auto& [attached, a] : decoder_adapters(llm)) {
    if (a.get() != active) continue;
    auto* w = dynamic_cast<IaaDecoderAdapterImpl*>(active);
    return w ? w->workflow() : attached;
  }
  return kTextWorkflow;
}

}  // namespace mmtune::adapters
