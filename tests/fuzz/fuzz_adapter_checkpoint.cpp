// libFuzzer target: an mmtune adapter directory (adapter_config.json, then after the separator
// adapter_model.safetensors) loaded as eval, chat and serve load --checkpoint: the architecture
// overrides recorded in adapter_config.json go through the config checks (runtime::adapter_overrides
// -> config::load_config), the model is built from the tiny LaVIN checkpoints, then
// runtime::load_adapter fills it. The recorded sizes are attacker-controlled: a config that passes
// must not allocate beyond -malloc_limit_mb. MMTUNE_FUZZ_TINY: the tiny checkpoints' directory.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/runtime/adapter_checkpoint.h>
#include <mmtune/runtime/build_model.h>

#include "fuzz_base_config.h"

namespace {

std::string base_config() {
  return mmtune::fuzz::base_config(
      "model:\n  path: $TINY/llama-gqa\nvision:\n  path: $TINY/clip-vit\n  feature: cls_every\n  cls_every: 1\n"
      "  image_size: 32\n  projector_hidden: 16\nadapter:\n  family: mma\n  mma:\n    dim: 8\ntrain:\n  lr: 1e-3\n");
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

// MMTUNE_FUZZ_SEED_OUT=FILE: write one valid input (the tiny LaVIN model's fresh adapter, as
// runtime::save_adapter writes it) to FILE and exit; scripts/fuzz.sh seeds the corpus with it.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace mmtune;
  const char* out = std::getenv("MMTUNE_FUZZ_SEED_OUT");
  if (!out) return 0;
  const auto cfg = config::load_config(base_config(), {}, adapters::builtin_adapters());
  const auto built = runtime::build_model(cfg, runtime::Weights::kLoad);
  const std::string dir = fuzz::scratch_dir() + "/seed";
  runtime::save_adapter(dir, cfg, built);
  std::ofstream f(out, std::ios::binary);
  f << read_all(dir + "/adapter_config.json") << fuzz::kSeparator << read_all(dir + "/adapter_model.safetensors");
  std::exit(f.good() ? 0 : 1);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  static const std::string config_path = base_config();

  const auto parts = fuzz::split(data, size, 2);
  fuzz::write_file("adapter/adapter_config.json", parts[0]);
  fuzz::write_file("adapter/adapter_model.safetensors", parts[1]);
  const std::string dir = fuzz::scratch_dir() + "/adapter";
  try {
    const auto cfg = config::load_config(config_path, runtime::adapter_overrides(dir), adapters::builtin_adapters());
    runtime::load_adapter(dir, cfg, fuzz::built_model(cfg));
  } catch (const Error&) {
  }
  return 0;
}
