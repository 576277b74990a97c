#include <mmtune/core/cpu_features.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace mmtune {

bool cpu_has_fast_bf16_matmul(const std::string& cpuinfo_flags, const char* onednn_max_cpu_isa) {
  std::set<std::string> flags;
  std::istringstream in(cpuinfo_flags);
  for (std::string f; in >> f;) flags.insert(f);
  if (!flags.count("avx512bw") || !flags.count("avx512vl") || !flags.count("avx512dq")) return false;
  if (onednn_max_cpu_isa == nullptr || *onednn_max_cpu_isa == '\0') return true;
  // oneDNN's names: SSE41, AVX, AVX2, AVX2_VNNI, AVX2_VNNI_2, AVX512_CORE, AVX512_CORE_VNNI,
  // AVX512_CORE_BF16, AVX10_1_512, AVX512_CORE_AMX, ..., ALL / DEFAULT
  std::string cap(onednn_max_cpu_isa);
  std::transform(cap.begin(), cap.end(), cap.begin(), [](unsigned char c) { return std::toupper(c); });
  return !(cap.rfind("SSE", 0) == 0 || cap == "AVX" || cap.rfind("AVX2", 0) == 0);
}

bool cpu_has_fast_bf16_matmul() {
  static const bool fast = [] {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("flags", 0) == 0) {
        const auto colon = line.find(':');
        return cpu_has_fast_bf16_matmul(colon == std::string::npos ? "" : line.substr(colon + 1),
                                        std::getenv("ONEDNN_MAX_CPU_ISA"));
      }
    }
    return true;  // no /proc/cpuinfo (not Linux x86): nothing to warn about
  }();
  return fast;
}

}  // namespace mmtune
