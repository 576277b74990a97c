// Adapter files, the unit users share: <dir>/adapter_model.safetensors (the trainable tensors under
// their model names, fp32) + <dir>/adapter_config.json:
//   {"format": "mmtune.adapter", "version": 1, "family": "mma",
//    "adapter": {"family": ..., "<family>": {options}},     the adapter.* config subtree
//    "vision": {feature, cls_every, layer, image_size, ...}, what shapes the visual path (no paths)
//    "base_model": {id, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size, vocab_size},
//    "vision_model": {id, hidden_size, num_layers, image_size, patch_size} | null,
//    "trainable": "adapter" | "all", "trainable_parameters": N, "mmtune_version": ...}
// scripts/convert_lavin_checkpoint.py writes the same layout from an official LaVIN checkpoint.
#pragma once

#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/runtime/build_model.h>

namespace mmtune::runtime {

inline constexpr const char* kAdapterWeightsFile = "adapter_model.safetensors";
inline constexpr const char* kAdapterConfigFile = "adapter_config.json";

/// The adapter_config.json text for `built` made from `cfg`.
std::string adapter_config_json(const config::RunConfig& cfg, const BuiltModel& built);

/// Writes both files into `dir` (created if needed), each to a temp file renamed into place.
void save_adapter(const std::string& dir, const config::RunConfig& cfg, const BuiltModel& built);

/// The config overrides ("adapter.family=mma", "adapter.mma.temperature=10", "vision.cls_every=4",
/// ...) recorded in dir/adapter_config.json, to apply before build_model so the model has the
/// adapter's architecture. Throws CheckpointError for a missing or malformed file.
std::vector<std::string> adapter_overrides(const std::string& dir);

/// The adapter directory `spec` names: itself when it holds adapter_config.json, else the latest
/// complete checkpoint-<step> inside it (a training output_dir). Eval and chat resolve their
/// --checkpoint / --adapter NAME=DIR with it. Throws CheckpointError with a hint.
std::string resolve_adapter_dir(const std::string& spec);

/// Loads dir's adapter into built.trainable: the family must be cfg's, the base shapes the
/// model's; missing, unexpected and wrongly shaped tensors are listed in one CheckpointError. A
/// base precision other than the recorded one is allowed (QLoRA's use) and logged once.
void load_adapter(const std::string& dir, const config::RunConfig& cfg, BuiltModel& built);

/// load_adapter without the family check, into `targets` (name in dir's file -> model tensor)
/// instead of built.trainable: the base shapes are checked against `built`, and the file must hold
/// exactly the targets' names and shapes; a base precision other than the recorded one (cfg.dtype,
/// the built towers' quantization) is logged, as load_adapter does. For an adapter loaded under
/// other names (an IAA workflow served under another name, runtime/workflows.h).
void load_adapter_into(const std::string& dir, const config::RunConfig& cfg, const BuiltModel& built,
                       const std::vector<std::pair<std::string, torch::Tensor>>& targets);

}  // namespace mmtune::runtime
