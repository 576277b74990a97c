// The run config that the model-building targets (adapter_checkpoint, peft) start from: the tiny
// checkpoints of MMTUNE_FUZZ_TINY plus `yaml`. It must load as it is, or every input would stop at
// the same config error and the parsers behind it would never run: checked once, a finding if not.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>

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

}  // namespace mmtune::fuzz
