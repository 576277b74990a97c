// The launch environment torchrun (or srun, or scripts/launch_ddp.sh) gives each process.
#pragma once

#include <string>

namespace mmtune {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool launched = false;  // RANK and WORLD_SIZE were set

  /// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (torchrun). Without RANK and
  /// WORLD_SIZE but under srun with MASTER_ADDR exported, SLURM_PROCID / SLURM_NTASKS /
  /// SLURM_LOCALID stand in for them. Unset -> single process.
  /// Throws mmtune::UsageError naming the variable when a value is malformed or inconsistent.
  static DistEnv from_env();
};

}  // namespace mmtune
