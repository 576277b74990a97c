// libFuzzer target: a Hugging Face config.json beside real (tiny) weights, loaded as the frozen
// LLaMA (model::load_llama) and as the CLIP ViT (model::load_clip_vision) the way every verb loads
// them. The sizes in config.json are what an attacker controls: every size must be checked against
// the weights' own shapes before anything is allocated (-malloc_limit_mb catches one that is not).
// MMTUNE_FUZZ_TINY names the directory of the tiny checkpoints (scripts/reference/
// make_tiny_checkpoints.py; scripts/fuzz.sh makes them).
#include <cstdlib>
#include <filesystem>

#include <mmtune/core/errors.h>
#include <mmtune/model/clip_vit.h>
#include <mmtune/model/weights.h>

#include "fuzz_common.h"

namespace {

// scratch/<name>/model.safetensors -> the tiny checkpoint's weights (made once per process)
std::string model_dir(const char* name, const char* tiny_subdir) {
  namespace fs = std::filesystem;
  const char* tiny = std::getenv("MMTUNE_FUZZ_TINY");
  if (!tiny || !fs::exists(fs::path(tiny) / tiny_subdir / "model.safetensors"))
    mmtune::fuzz::finding("set MMTUNE_FUZZ_TINY to the tiny checkpoints' directory (scripts/fuzz.sh does)");
  const fs::path dir = fs::path(mmtune::fuzz::scratch_dir()) / name;
  if (!fs::exists(dir / "model.safetensors")) {
    fs::create_directories(dir);
    fs::create_symlink(fs::path(tiny) / tiny_subdir / "model.safetensors", dir / "model.safetensors");
  }
  return dir.string();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mmtune;
  static const std::string llama = model_dir("llama", "llama-gqa"), clip = model_dir("clip", "clip-vit");
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  fuzz::write_file("llama/config.json", json);
  fuzz::write_file("clip/config.json", json);
  try {
    auto m = model::load_llama(llama, torch::kFloat32);
    if (m->config().vocab_size <= 0 || m->config().num_layers <= 0) fuzz::finding("a LLaMA without tokens or layers loaded");
  } catch (const Error&) {
  }
  try {
    auto v = model::load_clip_vision(clip, torch::kFloat32);
  } catch (const Error&) {
  }
  return 0;
}
