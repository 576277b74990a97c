// Shared by the libFuzzer targets in this folder (tests/fuzz/README.md). Each target feeds outside
// data to one parser through the same entry point the product uses (mostly files, so the input is
// written to a scratch directory first). The contract every target checks: a malformed input fails
// with an mmtune::Error (or the parser's documented error type); anything else escaping (another
// exception type -> libFuzzer's "uncaught exception" abort), a crash, a sanitizer report, a hang or
// an allocation beyond -rss_limit_mb / -malloc_limit_mb is a finding.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace mmtune::fuzz {

/// A directory of this process's own, removed at exit.
inline const std::string& scratch_dir() {
  // on the heap and never freed: the atexit cleanup runs after static destructors
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    auto* d = new std::string(std::string(tmp && *tmp ? tmp : "/tmp") + "/mmtune-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(*d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return d;
  }();
  return *dir;
}

/// Writes `bytes` to scratch_dir()/name (sub-directories created); returns the path.
inline std::string write_file(const std::string& name, std::string_view bytes) {
  const std::filesystem::path p = std::filesystem::path(scratch_dir()) / name;
  std::filesystem::create_directories(p.parent_path());
  FILE* f = std::fopen(p.c_str(), "wb");
  if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0) {
    std::perror(p.c_str());
    std::abort();  // the harness itself failed, not the parser
  }
  return p.string();
}

/// The separator between the parts of a multi-file input (seeds keep it readable).
inline constexpr std::string_view kSeparator = "\n=====\n";

/// The input cut at the first `parts - 1` separators; missing parts are empty.
inline std::vector<std::string_view> split(const uint8_t* data, size_t size, size_t parts) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    const size_t at = rest.find(kSeparator);
    if (at == std::string_view::npos) break;
    out.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kSeparator.size());
  }
  out.push_back(rest);
  out.resize(parts);
  return out;
}

/// A property the parser promises does not hold: report and abort (libFuzzer saves the input).
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "mmtune fuzz finding: %s\n", what.c_str());
  std::abort();
}

}  // namespace mmtune::fuzz
