// mmtune version: what this binary is and what it was built against.
#include <mmtune/core/version.h>
#include <mmtune/runtime/distributed.h>

#include <iostream>

#include <torch/version.h>

#include "commands.h"

namespace mmtune::cli {

void add_version_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("version", "Print mmtune's version and what it was built against");
  cmd->footer("Example:\n  mmtune version");
  cmd->callback([&action] {
    action = [] {
      std::cout << "mmtune " << kVersion << " (" << kGitRevision << ", " << kBuildType << ")\n"
                << "torch " << TORCH_VERSION << ", CUDA " << (torch::cuda::is_available() ? "available" : "not available")
                << " (" << static_cast<int>(torch::cuda::device_count()) << " devices)\n"
                << "c10d backends: gloo" << (runtime::nccl_compiled() ? ", nccl" : "") << "\n";
      return 0;
    };
  });
}

}  // namespace mmtune::cli
