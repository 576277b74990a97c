// libFuzzer target for the safetensors parser: any byte string must either open as a valid file or
// fail with a SafetensorsError — never crash, hang or throw anything else. Built with clang
// (tests/CMakeLists.txt, target fuzz_safetensors) and run for a short while in the `slow` label.
#include <mmtune/io/safetensors.h>

#include <unistd.h>

#include <cstdio>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/mmtune-fuzz-" + std::to_string(::getpid()) + ".safetensors";
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  }
  try {
    auto file = mmtune::io::SafetensorsFile::open(path);
    for (const auto& name : file->names()) {
      const torch::Tensor t = file->tensor(name);
      if (t.numel() > 0) (void)t.flatten()[0].item<double>();  // touch the first and last bytes
      if (t.numel() > 1) (void)t.flatten()[t.numel() - 1].item<double>();
    }
  } catch (const mmtune::io::SafetensorsError&) {
  }
  return 0;
}
