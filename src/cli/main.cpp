// The mmtune binary: parse the verb, set up logging, run, and turn any error into one clean line
// and an exit code (0 ok, 1 runtime error, 2 usage or config error, 130 Ctrl-C).
#include <mmtune/core/dist_env.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/signals.h>
#include <mmtune/core/strings.h>
#include <mmtune/core/version.h>

#include <algorithm>
#include <iostream>

#include <c10/util/Exception.h>

#include "commands.h"

namespace {

int report(const mmtune::Error& e) {
  mmtune::log::error() << e.one_line();
  return static_cast<int>(e.exit_code());
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mmtune;
  install_interrupt_handler();

  CLI::App app{"mmtune: tune small adapters on frozen multimodal LLMs (LaVIN/MMA, IAA, MoLE, LoRA)", "mmtune"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace | debug | info | warn | error | off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "off"}));
  app.set_version_flag("--version", std::string("mmtune ") + kVersion);
  app.footer("Run `mmtune VERB --help` for a verb's flags and an example.");

  cli::Action action;
  cli::add_train_command(app, action);
  cli::add_eval_command(app, action);
  cli::add_chat_command(app, action);
  cli::add_generate_command(app, action);
  cli::add_serve_command(app, action);
  cli::add_convert_command(app, action);
  cli::add_bench_command(app, action);
  cli::add_config_command(app, action);
  cli::add_version_command(app, action);

  // An unknown verb: CLI11 would only say that a subcommand is required
  std::vector<std::string> verbs;
  const CLI::App& all = app;
  for (const auto* sub : all.get_subcommands([](const CLI::App*) { return true; })) verbs.push_back(sub->get_name());
  if (argc > 1 && argv[1][0] != '-' && std::find(verbs.begin(), verbs.end(), argv[1]) == verbs.end()) {
    const auto guess = closest_match(argv[1], verbs);
    std::string list;
    for (const auto& v : verbs) list += (list.empty() ? "" : ", ") + v;
    std::cerr << "error: unknown verb '" << argv[1] << "'" << (guess ? "; did you mean " + *guess + "?" : "")
              << " (hint: the verbs are " << list << "; mmtune --help)\n";
    return static_cast<int>(ExitCode::kUsage);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : static_cast<int>(ExitCode::kUsage);
  }

  const auto level = log::parse_level(log_level).value_or(log::Level::kInfo);
  try {
    const DistEnv env = DistEnv::from_env();
    log::init(level, env.rank, env.world_size);
    return action ? action() : static_cast<int>(ExitCode::kUsage);
  } catch (const Error& e) {
    return report(e);
  } catch (const c10::Error& e) {
    // torch's own errors: the message alone, its C++ backtrace only when debugging.
    log::error() << "torch: " << (level <= log::Level::kDebug ? e.what() : e.what_without_backtrace());
    return static_cast<int>(ExitCode::kRuntime);
  } catch (const std::exception& e) {
    log::error() << "internal error: " << e.what() << " (hint: rerun with --log-level debug and report it)";
    return static_cast<int>(ExitCode::kRuntime);
  }
}
