#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/workflows.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <nlohmann/json.hpp>

#include <map>
#include <set>

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

std::vector<torch::Tensor> attach_workflow(model::LlamaDecoderImpl& llm, const config::AdapterConfig& adapter,
                                           const std::string& name, const VisualPath& visual) {
  IaaConfig options = adapter.selected<IaaConfig>();
  options.workflow = name;
  return attach_workflow(llm, options, visual);
}

std::string workflow_in(const std::vector<std::string>& overrides) {
  const std::string key = kWorkflowOverride;
  for (const auto& o : overrides) {
    if (o.rfind(key, 0) == 0) return nlohmann::json::parse(o.substr(key.size())).get<std::string>();
  }
  return IaaConfig{}.workflow;
}

std::string workflow_tensor_prefix(const std::string& name) { return "llm.adapters." + iaa_module_name(name) + "."; }

namespace {

using StorageSet = std::map<const void*, int64_t>;  // storage -> its bytes

void add_storage(StorageSet& set, const torch::Tensor& t) {
  if (t.defined() && t.has_storage()) set.emplace(t.storage().unsafeGetStorageImpl(), static_cast<int64_t>(t.storage().nbytes()));
}

// Every tensor under `m` outside the modules in `skip`: frozen ones into `frozen`, trainable into `trainable`.
void collect_storages(const torch::nn::Module& m, const std::set<const torch::nn::Module*>& skip, StorageSet& frozen,
                      StorageSet& trainable) {
  for (const auto& p : m.named_parameters(/*recurse=*/false))
    add_storage(p.value().requires_grad() ? trainable : frozen, p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/false)) add_storage(frozen, b.value());
  for (const auto& child : m.children())
    if (!skip.count(child.get())) collect_storages(*child, skip, frozen, trainable);
}

int64_t bytes_outside(const StorageSet& set, const StorageSet& base) {
  int64_t n = 0;
  for (const auto& [storage, bytes] : set)
    if (!base.count(storage)) n += bytes;
  return n;
}

}  // namespace

AdapterMemory adapter_memory(torch::nn::Module& root, model::LlamaDecoderImpl& llm) {
  const auto attached = decoder_adapters(llm);
  std::set<const torch::nn::Module*> skip;
  for (const auto& [name, a] : attached) skip.insert(a.get());
  StorageSet frozen, trainable;
  collect_storages(root, skip, frozen, trainable);
  AdapterMemory m;
  for (const auto& [storage, bytes] : frozen) m.base_bytes += bytes;
  m.other_trainable_bytes = bytes_outside(trainable, frozen);
  for (const auto& [name, a] : attached) {
    StorageSet own;
    for (const auto& p : a->parameters()) add_storage(own, p);
    for (const auto& b : a->buffers()) add_storage(own, b);
    auto* w = dynamic_cast<IaaDecoderAdapterImpl*>(a.get());
    m.decoder_adapters.emplace_back(w ? w->workflow() : name, bytes_outside(own, frozen));
  }
  return m;
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
