// Plain LoRA in the Hugging Face PEFT layout, so adapters move between mmtune and peft:
//   <dir>/adapter_model.safetensors   base_model.model.model.layers.{i}.{self_attn|mlp}.{p}_proj.lora_{A|B}.weight
//                                     A [r, in], B [out, r], fp32
//   <dir>/adapter_config.json         {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r", "lora_alpha",
//                                      "lora_dropout", "target_modules": ["q_proj", ...], "bias": "none",
//                                      "layers_to_transform": null | [i, ...], "base_model_name_or_path", ...}
// `PeftModel.from_pretrained(base, dir)` loads what export_peft writes, and import_peft reads what
// `save_pretrained` writes, as long as it is the LoRA mmtune computes: y = W x + (alpha / r) B A x on
// LLaMA's seven projections (no DoRA, rsLoRA, per-module ranks, biases or extra trained modules).
// Also: the merged model (lora.h merge_lora) written as a Hugging Face LLaMA directory.
#pragma once

#include <string>
#include <vector>

#include <mmtune/adapters/lora.h>
#include <mmtune/model/llama.h>

namespace mmtune::adapters {

inline constexpr const char* kPeftWeightsFile = "adapter_model.safetensors";
inline constexpr const char* kPeftConfigFile = "adapter_config.json";

/// PEFT's tensor name: "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight" (`a`) or
/// "...lora_B.weight".
std::string peft_lora_name(int64_t layer, Proj p, bool a);

/// Writes the LoRA blocks attached to `model` (built from `options`) into `dir` (created if
/// needed) in PEFT's layout; `base_model` goes to base_model_name_or_path. Throws mmtune::Error
/// when the model carries no LoRA blocks or a block does not match `options`.
void export_peft(model::LlamaDecoderImpl& model, const LoraConfig& options, const std::string& base_model,
                 const std::string& dir);

/// The options of the PEFT LoRA adapter in `dir` (its adapter_config.json) as adapter.lora.*:
/// r, lora_alpha, lora_dropout, target_modules, layers_to_transform. Throws CheckpointError (with a
/// hint) for a missing or malformed file and for every PEFT feature mmtune's LoRA does not compute
/// (use_dora, use_rslora, rank_pattern / alpha_pattern, bias, modules_to_save, fan_in_fan_out,
/// aLoRA, KaSA, BD-LoRA, ..., targets other than LLaMA's q k v o gate up down, a regex
/// target_modules). `base_model`
/// receives base_model_name_or_path when given.
LoraConfig read_peft_config(const std::string& dir, std::string* base_model = nullptr);

/// Whether dir/adapter_config.json is a PEFT config (has "peft_type"); false when absent or unreadable.
bool is_peft_adapter(const std::string& dir);

/// The config overrides ("adapter.family=lora", "adapter.lora.rank=4", ...) that build a model
/// with `options`' LoRA (for load_config before build_model).
std::vector<std::string> lora_overrides(const LoraConfig& options);

/// Copies `dir`'s adapter_model.safetensors into the LoRA blocks attached to `model` (built with
/// read_peft_config's options). Missing, unexpected and wrongly shaped tensors are listed in one
/// CheckpointError.
void import_peft(model::LlamaDecoderImpl& model, const std::string& dir);

/// Writes `model`'s frozen weights (adapters excluded; after merge_lora they hold the merged
/// weights) as a Hugging Face LLaMA directory: out_dir/model.safetensors in the model's dtype, plus
/// config.json and the tokenizer / generation files copied from `source_dir`. Throws
/// CheckpointError when a file cannot be written or source_dir has no config.json.
void save_llama(model::LlamaDecoderImpl& model, const std::string& source_dir, const std::string& out_dir);

}  // namespace mmtune::adapters
