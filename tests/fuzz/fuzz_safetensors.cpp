// libFuzzer target for the safetensors parser: any byte string must either open as a valid file
// whose tensors lie inside the mapping, or fail with a SafetensorsError. Anything else (another
// exception, a crash, a read past the mapping, a hang) is a finding.
// Built and run by scripts/fuzz.sh like every target here (tests/fuzz/README.md).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <mmtune/io/safetensors.h>

namespace {

// One file per fuzzing process, rewritten for every input: the parser under test reads files only.
const std::string& input_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    std::string p = std::string(dir && *dir ? dir : "/tmp") + "/mmtune-fuzz-" + std::to_string(::getpid()) +
                    ".safetensors";
    std::atexit([] { ::unlink(input_path().c_str()); });
    return p;
  }();
  return path;
}

bool write_file(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const bool ok = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!write_file(input_path(), data, size)) std::abort();  // the harness itself failed
  try {
    const auto file = mmtune::io::SafetensorsFile::open(input_path());
    volatile unsigned char sink = 0;
    for (const auto& name : file->names()) {
      const mmtune::io::TensorInfo& info = file->info(name);
      const torch::Tensor t = file->tensor(name);
      // A valid file's tensors have exactly their header's bytes; touching the first and last byte
      // makes ASan (or a SIGSEGV) catch any view reaching outside the mapping.
      if (t.nbytes() != info.end - info.begin || t.sizes() != torch::IntArrayRef(info.shape)) std::abort();
      const auto* bytes = static_cast<const unsigned char*>(t.data_ptr());
      if (t.nbytes() > 0) sink = sink ^ bytes[0] ^ bytes[t.nbytes() - 1];
    }
    (void)sink;
  } catch (const mmtune::io::SafetensorsError&) {
    // the expected way for a malformed file to fail
  }
  return 0;
}
