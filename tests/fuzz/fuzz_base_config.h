// The run config that the model-building targets (adapter_checkpoint, peft) start from: the tiny
// checkpoints of MMTUNE_FUZZ_TINY plus `yaml`. It must load as it is, or every input would stop at
// the same config error and the parsers behind it would never run: checked once, a finding if not.
// built_model(): the model those targets load an adapter into, built once per distinct config.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/runtime/build_model.h>

#include <torch/torch.h>

#include "fuzz_common.h"

namespace mmtune::fuzz {

/// Writes scratch_dir()/base.yaml from `yaml` with every "$TINY" replaced by MMTUNE_FUZZ_TINY;
/// returns its path once it has loaded.
inline std::string base_config(std::string yaml) {
  const char* tiny = std::getenv("MMTUNE_FUZZ_TINY");
  if (!tiny || !std::filesystem::exists(std::string(tiny) + "/llama-gqa/model.safetensors"))
    finding("set MMTUNE_FUZZ_TINY to the tiny checkpoints' directory (scripts/fuzz.sh does)");
  for (size_t at; (at = yaml.find("$TINY")) != std::string::npos;) yaml.replace(at, 5, tiny);
  const std::string path = write_file("base.yaml", yaml);
  try {
    config::load_config(path, {}, adapters::builtin_adapters());
  } catch (const Error& e) {
    finding(std::string("the harness's base config does not load: ") + e.what());
  }
  return path;
}

/// The model build_model makes for `cfg`, kept while consecutive inputs resolve to the same config
/// (most do: building it from the tiny checkpoints dominated these targets, ~60 inputs/s) and reset
/// to its freshly built values on every call, so what one input loaded never reaches the next and a
/// finding reproduces from its input alone.
inline runtime::BuiltModel& built_model(const config::RunConfig& cfg) {
  static std::string key;
  static std::optional<runtime::BuiltModel> built;
  static std::map<std::string, torch::Tensor> fresh;  // every parameter and buffer as built
  std::string k = config::to_yaml(cfg);
  if (!built || k != key) {
    built.reset();
    fresh.clear();
    built.emplace(runtime::build_model(cfg, runtime::Weights::kLoad));
    key = std::move(k);
    for (const auto& p : built->model->named_parameters()) fresh[p.key()] = p.value().detach().clone();
    for (const auto& b : built->model->named_buffers()) fresh["buffer:" + b.key()] = b.value().detach().clone();
    return *built;
  }
  torch::NoGradGuard no_grad;
  for (const auto& p : built->model->named_parameters()) {
    const torch::Tensor& was = fresh.at(p.key());
    if (!p.value().sizes().equals(was.sizes()) || p.value().dtype() != was.dtype())
      finding("parameter " + p.key() + " changed shape or dtype while an adapter loaded");
    p.value().copy_(was);
  }
  for (const auto& b : built->model->named_buffers()) {
    const torch::Tensor& was = fresh.at("buffer:" + b.key());
    if (b.value().sizes().equals(was.sizes()) && b.value().dtype() == was.dtype()) b.value().copy_(was);
    else finding("buffer " + b.key() + " changed shape or dtype while an adapter loaded");
  }
  return *built;
}

}  // namespace mmtune::fuzz
