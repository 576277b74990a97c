// libFuzzer target: a PEFT LoRA adapter directory (adapter_config.json, then after the separator
// adapter_model.safetensors) imported as `mmtune convert --from-peft` does: read_peft_config ->
// its options as config overrides (config::load_config checks them) -> the tiny LLaMA built ->
// import_peft. MMTUNE_FUZZ_TINY: the tiny checkpoints' directory.
#include <cstdlib>
#include <filesystem>

#include <mmtune/adapters/peft.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/runtime/build_model.h>

#include "fuzz_base_config.h"

namespace {

std::string base_config() {
  return mmtune::fuzz::base_config("model:\n  path: $TINY/llama-gqa\nadapter:\n  family: lora\ntrain:\n  lr: 1e-3\n");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  static const std::string config_path = base_config();
  const auto parts = fuzz::split(data, size, 2);
  fuzz::write_file("peft/adapter_config.json", parts[0]);
  fuzz::write_file("peft/adapter_model.safetensors", parts[1]);
  const std::string dir = fuzz::scratch_dir() + "/peft";
  try {
    std::string base;
    const adapters::LoraConfig peft = adapters::read_peft_config(dir, &base);
    const auto cfg = config::load_config(config_path, adapters::lora_overrides(peft), adapters::builtin_adapters());
    adapters::import_peft(fuzz::built_model(cfg).model->llm(), dir);
  } catch (const Error&) {
  }
  return 0;
}
