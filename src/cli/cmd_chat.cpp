// mmtune chat --config FILE [--checkpoint DIR] [--image PATH]
#include "commands.h"

namespace mmtune::cli {

void add_chat_command(CLI::App& app, Action& action) {
  struct Args {
    ConfigArgs config;
    std::string checkpoint, image;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("chat", "Interactive chat, text or image + text, streaming");
  add_config_args(cmd, args->config);
  cmd->add_option("--checkpoint", args->checkpoint, "adapter checkpoint directory");
  cmd->add_option("--image", args->image, "image for the first turn");
  cmd->footer("Example:\n  mmtune chat --config configs/lavin/tiny.yaml --checkpoint runs/lavin-tiny/checkpoint-last "
              "--image cat.png\n  (in the session: /image PATH, /clear, /workflow NAME, /help, /quit)");
  cmd->callback([&action, args] {
    action = [args]() -> int {
      load_run_config(args->config);
      not_built_yet("chat", "issue #7: eval and chat");
    };
  });
}

}  // namespace mmtune::cli
