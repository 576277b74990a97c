#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>

#include "commands.h"

namespace mmtune::cli {

void add_config_args(CLI::App* cmd, ConfigArgs& args, bool required) {
  auto* opt = cmd->add_option("-c,--config", args.path, "YAML config (see configs/)");
  if (required) opt->required();
  cmd->add_option("overrides", args.overrides, "key.sub=value overrides applied after the file");
}

config::RunConfig load_run_config(const ConfigArgs& args) {
  return config::load_config(args.path, args.overrides, adapters::builtin_adapters());
}

void not_built_yet(const std::string& verb, const std::string& issue) {
  throw UsageError("`mmtune " + verb + "` is not built yet (" + issue + ")",
                   "`mmtune config print --config FILE` shows the resolved config in the meantime");
}

}  // namespace mmtune::cli
