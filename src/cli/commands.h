// The verbs of the mmtune binary. Each file registers one verb's flags and its action; main.cpp
// owns parsing, logging setup and the single try/catch that maps errors to exit codes.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <mmtune/config/config.h>
#include <mmtune/runtime/build_model.h>

namespace mmtune::cli {

/// What runs after parsing; returns the exit code.
using Action = std::function<int()>;

/// --config FILE and trailing key.sub=value overrides, shared by the verbs that take a config.
struct ConfigArgs {
  std::string path;
  std::vector<std::string> overrides;
  std::string quantize;  // --quantize: model.quantize, applied after the overrides
  int64_t quant_group = 0;  // --quant-group: model.quant_group (0 = the config's)
  std::string quant_fallback;  // --quant-fallback: model.quant_fallback
  /// The positional overrides, then --quantize / --quant-group / --quant-fallback as overrides.
  std::vector<std::string> all_overrides() const;
};
void add_config_args(CLI::App* cmd, ConfigArgs& args, bool required = true);
/// Loads and validates the config with the built-in adapter families; throws ConfigError.
config::RunConfig load_run_config(const ConfigArgs& args);
/// --config / --checkpoint / --adapter NAME=DIR as chat and serve take them (IAA workflows on one
/// frozen base: --adapter, repeated, instead of --checkpoint).
struct AdapterArgs {
  ConfigArgs config;
  std::string checkpoint;             // an adapter directory or a training output_dir (resolved)
  std::vector<std::string> adapters;  // --adapter NAME=DIR
};
/// The config file, then the checkpoint's (or first workflow's) adapter options, then the user's
/// overrides; a checkpoint of another family than the config's is a CheckpointError.
config::RunConfig adapter_run_config(const AdapterArgs& a);
/// build_model(cfg) with the checkpoint or every workflow loaded, in eval mode; `served` gets
/// "NAME=DIR" per workflow.
runtime::BuiltModel build_adapted_model(const AdapterArgs& a, const config::RunConfig& cfg,
                                      std::vector<std::string>& served);

/// Throws UsageError: the verb parses and validates its input, but its machinery is not built yet.
[[noreturn]] void not_built_yet(const std::string& verb, const std::string& issue);

void add_train_command(CLI::App& app, Action& action);
void add_eval_command(CLI::App& app, Action& action);
void add_chat_command(CLI::App& app, Action& action);
void add_convert_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_config_command(CLI::App& app, Action& action);
void add_version_command(CLI::App& app, Action& action);
void add_generate_command(CLI::App& app, Action& action);
void add_serve_command(CLI::App& app, Action& action);

}  // namespace mmtune::cli
