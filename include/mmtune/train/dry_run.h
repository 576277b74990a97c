// `mmtune train --dry-run`: the real model tree of a config built on the meta device (no weights
// read, no memory), adapters attached, and the trainable parameters counted by module.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mmtune/config/config.h>

namespace mmtune::train {

struct ParamGroup {
  std::string module;    // parameter path with layer indices folded to '*' ("model.layers.*.adapters.mma")
  int64_t instances = 0; // how many modules matched (e.g. 32 layers)
  int64_t params = 0;    // sum of numel over their parameters with requires_grad
};

struct DryRun {
  std::string llm;       // shape description
  std::string vision;    // shape description, empty when text-only
  std::vector<ParamGroup> groups;
  int64_t trainable = 0;
  int64_t frozen = 0;
};

/// Builds the config's model on the meta device (shapes from config.json when model.path / vision.path
/// hold one, else from model.arch / vision.arch) and counts parameters. Throws ConfigError-style
/// mmtune::Error when neither gives a shape.
DryRun dry_run(const config::RunConfig& config);

/// The table as text: one row per group, then the totals.
std::string format_dry_run(const DryRun& d);

}  // namespace mmtune::train
