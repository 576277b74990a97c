// mmtune config print | keys | validate
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>

#include <iostream>

#include "commands.h"

namespace mmtune::cli {

void add_config_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("config", "Inspect configs: print the resolved config, list keys, validate");
  cmd->require_subcommand(1);
  cmd->footer("Examples:\n  mmtune config print --config configs/lavin/tiny.yaml train.lr=1e-4\n"
              "  mmtune config keys | grep adapter.mma\n  mmtune config validate --config configs/scienceqa.yaml");

  auto print_args = std::make_shared<ConfigArgs>();
  auto* print = cmd->add_subcommand("print", "Print the fully resolved config (file + overrides + defaults)");
  add_config_args(print, *print_args);
  print->footer("Example:\n  mmtune config print --config configs/lavin/tiny.yaml train.lr=1e-4 adapter.mma.dim=16");
  print->callback([&action, print_args] {
    action = [print_args] {
      std::cout << config::to_yaml(load_run_config(*print_args));
      return 0;
    };
  });

  auto validate_args = std::make_shared<ConfigArgs>();
  auto* validate = cmd->add_subcommand("validate", "Check a config; prints 'ok' or every problem");
  add_config_args(validate, *validate_args);
  validate->footer("Example:\n  mmtune config validate --config configs/lavin/tiny.yaml");
  validate->callback([&action, validate_args] {
    action = [validate_args] {
      load_run_config(*validate_args);
      std::cout << validate_args->path << ": ok\n";
      return 0;
    };
  });

  auto* keys = cmd->add_subcommand("keys", "List every config key with its type, default and meaning");
  keys->footer("Example:\n  mmtune config keys | grep '^train\\.'");
  keys->callback([&action] {
    action = [] {
      for (const auto& k : config::list_keys(adapters::builtin_adapters())) {
        std::cout << k.path << "  (" << k.type << ", default " << k.default_value << ")  " << k.help << "\n";
      }
      return 0;
    };
  });
}

}  // namespace mmtune::cli
