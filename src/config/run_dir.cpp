#include <mmtune/config/load.h>
#include <mmtune/config/run_dir.h>
#include <mmtune/core/logging.h>

namespace mmtune::config {

std::string prepare_run_dir(const RunConfig& config, int rank) {
  if (rank == 0) save_resolved_config(config, config.output_dir);  // creates the directory
  const std::string log_path =
      config.output_dir + (rank == 0 ? "/mmtune.log" : "/mmtune.rank" + std::to_string(rank) + ".log");
  log::add_file(log_path);
  log::info() << "output directory " << config.output_dir << " (resolved config in config.yaml)";
  return log_path;
}

}  // namespace mmtune::config
