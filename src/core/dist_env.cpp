#include <mmtune/core/dist_env.h>
#include <mmtune/core/errors.h>

#include <charconv>
#include <cstdlib>
#include <optional>
#include <string>

namespace mmtune {
namespace {

std::optional<std::string> get(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int get_int(const char* name, int fallback, int min_value) {
  auto s = get(name);
  if (!s) return fallback;
  int v = 0;
  auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec != std::errc() || ptr != s->data() + s->size() || v < min_value) {
    throw UsageError(std::string("environment variable ") + name + "='" + *s + "' is not an integer >= " +
                         std::to_string(min_value),
                     "launch with torchrun / scripts/launch_ddp.sh, or unset it for a single process");
  }
  return v;
}

}  // namespace

DistEnv DistEnv::from_env() {
  DistEnv e;
  e.launched = get("RANK").has_value() || get("WORLD_SIZE").has_value();
  if (e.launched) {
    e.world_size = get_int("WORLD_SIZE", 1, 1);
    e.rank = get_int("RANK", 0, 0);
    e.local_rank = get_int("LOCAL_RANK", e.rank, 0);
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS") && get("MASTER_ADDR")) {
    // `srun mmtune train ...`: one task per GPU, SLURM numbers them; the batch script exports
    // MASTER_ADDR (the first node) and MASTER_PORT (docs/DISTRIBUTED.md)
    e.launched = true;
    e.world_size = get_int("SLURM_NTASKS", 1, 1);
    e.rank = get_int("SLURM_PROCID", 0, 0);
    e.local_rank = get_int("SLURM_LOCALID", 0, 0);
  }
  e.master_port = get_int("MASTER_PORT", 29500, 1);
  if (auto a = get("MASTER_ADDR")) e.master_addr = *a;
  if (e.rank >= e.world_size) {
    throw UsageError("RANK=" + std::to_string(e.rank) + " is not below WORLD_SIZE=" + std::to_string(e.world_size),
                     "ranks run from 0 to WORLD_SIZE-1");
  }
  if (e.master_port > 65535) throw UsageError("MASTER_PORT=" + std::to_string(e.master_port) + " is not a port");
  return e;
}

}  // namespace mmtune
