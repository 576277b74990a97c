// Several IAA workflows on one shared frozen decoder (spec §2.1): each workflow is one
// IaaDecoderAdapterImpl attached under "iaa_<workflow>"; the caller picks one per request and the
// frozen base is held in memory once. "text" is the untouched LLM (every decoder adapter disabled).
//
// KV caches are per workflow: in MM / G the frozen layers' cache entries are computed from that
// workflow's hidden states, so a cache prefilled under one workflow is stale under another. After
// select_workflow, callers drop the cache and prefill the whole history again
// (model::MultimodalLM::prefill with a fresh KVCache); keep one KVCache per workflow to switch
// back and forth without re-prefilling, and note active_workflow() next to each cache.
// The inserted layers use their own cache slots (KVCache::extra["iaa.<workflow>.<k>"]).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/adapters/iaa.h>
#include <mmtune/model/llama.h>

namespace mmtune::adapters {

/// The name of the workflow that runs the bare LLM.
inline constexpr const char* kTextWorkflow = "text";

/// Attaches one more workflow (name = options.workflow) to `llm`, built from its frozen layers,
/// embedding, norm and head as they are now (load the base weights first). Its trainable parts
/// get requires_grad; they are returned. Attaching does not select: the first enabled decoder
/// adapter stays the active one, so call select_workflow. Throws mmtune::Error when a workflow of
/// that name is attached already, or when the options do not fit the model.
std::vector<torch::Tensor> attach_workflow(model::LlamaDecoderImpl& llm, const IaaConfig& options,
                                           const VisualPath& visual);

/// The config override that names the workflow an adapter is trained or served as, with its '='
/// ("adapter.iaa.workflow="; runtime::workflow_overrides appends the name).
inline constexpr const char* kWorkflowOverride = "adapter.iaa.workflow=";

/// The workflow `overrides` (an adapter directory's recorded config, runtime::adapter_overrides)
/// name with kWorkflowOverride, else IAA's default workflow name.
std::string workflow_in(const std::vector<std::string>& overrides);

/// attach_workflow with the options of `adapter` (a run config's adapter section, family iaa)
/// under the name `name` instead of theirs.
std::vector<torch::Tensor> attach_workflow(model::LlamaDecoderImpl& llm, const config::AdapterConfig& adapter,
                                           const std::string& name, const VisualPath& visual);

/// Where workflow `name`'s tensors sit in the model's state: "llm.adapters.iaa_<name>.".
std::string workflow_tensor_prefix(const std::string& name);

/// "text" followed by the attached IAA workflows, in attach order.
std::vector<std::string> workflow_names(model::LlamaDecoderImpl& llm);

/// Enables workflow `name`'s adapter and disables every other decoder adapter; "text" disables
/// them all (the bare LLM, bit for bit). Throws UsageError naming the workflows when unknown.
void select_workflow(model::LlamaDecoderImpl& llm, const std::string& name);

/// The workflow the next forward runs: "text" when no decoder adapter is enabled, else the active
/// adapter's workflow name (a non-IAA decoder adapter: the name it is attached under).
std::string active_workflow(model::LlamaDecoderImpl& llm);

/// Bytes of tensor data in `root` (a model holding `llm`), each storage counted once: the frozen
/// base, what every attached decoder adapter (an IAA workflow) adds to it, and the other trainable
/// tensors (adapters hooked into the layers: MMA, LoRA, MoLE, projectors). A serving process holds
/// base + the sum of the rest; `mmtune serve` logs it.
struct AdapterMemory {
  int64_t base_bytes = 0;
  std::vector<std::pair<std::string, int64_t>> decoder_adapters;  // workflow (or attach) name, bytes
  int64_t other_trainable_bytes = 0;
};
AdapterMemory adapter_memory(torch::nn::Module& root, model::LlamaDecoderImpl& llm);

/// Workflow `name`'s adapter, or nullptr.
IaaDecoderAdapterImpl* find_workflow(model::LlamaDecoderImpl& llm, const std::string& name);

}  // namespace mmtune::adapters
