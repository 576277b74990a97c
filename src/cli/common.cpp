#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>

#include "commands.h"

namespace mmtune::cli {

void add_config_args(CLI::App* cmd, ConfigArgs& args, bool required) {
  auto* opt = cmd->add_option("-c,--config", args.path, "YAML config (see configs/)");
  if (required) opt->required();
  cmd->add_option("overrides", args.overrides, "key.sub=value overrides applied after the file");
  cmd->add_option("--quantize", args.quantize, "none | int8 | int4: the frozen LLM's Linear layers (model.quantize)")
      ->check(CLI::IsMember({"none", "int8", "int4"}));
  cmd->add_option("--quant-group", args.quant_group, "int4 group size: 32 | 64 | 128 | 256 (model.quant_group)")
      ->check(CLI::IsMember({32, 64, 128, 256}));
  cmd->add_option("--quant-fallback", args.quant_fallback,
                  "int4: none | int8 for weights whose inputs the group does not divide (model.quant_fallback)")
      ->check(CLI::IsMember({"none", "int8"}));
}

std::vector<std::string> ConfigArgs::all_overrides() const {
  std::vector<std::string> all = overrides;
  if (!quantize.empty()) all.push_back("model.quantize=" + quantize);
  if (quant_group > 0) all.push_back("model.quant_group=" + std::to_string(quant_group));
  if (!quant_fallback.empty()) all.push_back("model.quant_fallback=" + quant_fallback);
  return all;
}

config::RunConfig load_run_config(const ConfigArgs& args) {
  return config::load_config(args.path, args.all_overrides(), adapters::builtin_adapters());
}

void not_built_yet(const std::string& verb, const std::string& issue) {
  throw UsageError("`mmtune " + verb + "` is not built yet (" + issue + ")",
                   "`mmtune config print --config FILE` shows the resolved config in the meantime");
}

}  // namespace mmtune::cli
