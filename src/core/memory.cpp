#include <mmtune/core/memory.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

namespace mmtune {
namespace {

// A "Key:   123 kB" line of /proc/meminfo in bytes; -1 when absent.
int64_t meminfo_bytes(const std::string& text, const std::string& key) {
  const auto at = text.find("\n" + key);
  if (at == std::string::npos) return -1;
  std::istringstream in(text.substr(at + key.size() + 1));
  int64_t kb = -1;
  in >> kb;
  return kb < 0 ? -1 : kb * 1024;
}

// A cgroup v2 file holding one number ("max" = no limit -> -1).
int64_t cgroup_value(const std::string& path) {
  std::ifstream f(path);
  std::string v;
  if (!(f >> v) || v == "max") return -1;
  try {
    return std::stoll(v);
  } catch (const std::exception&) {
    return -1;
  }
}

// A "Key:   123 kB" line of /proc/self/status in bytes, or -1.
int64_t proc_status_bytes(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) {
      std::istringstream s(line.substr(key.size()));
      int64_t kb = -1;
      s >> kb;
      return kb >= 0 ? kb * 1024 : -1;
    }
  }
  return -1;
}

}  // namespace

int64_t peak_rss_bytes() { return proc_status_bytes("VmHWM:"); }

int64_t current_rss_bytes() { return proc_status_bytes("VmRSS:"); }

int64_t available_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::ostringstream s;
  s << "\n" << f.rdbuf();
  int64_t avail = meminfo_bytes(s.str(), "MemAvailable:");
  if (avail >= 0) avail += std::max<int64_t>(meminfo_bytes(s.str(), "SwapFree:"), 0);
  // this process's cgroup: v2 ("0::/path": memory.max, memory.current) or v1's memory controller
  // ("N:memory:/path": memory.limit_in_bytes, memory.usage_in_bytes; an unlimited v1 limit is ~2^63)
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  auto limit = [&](const std::string& dir, const char* max_file, const char* used_file) {
    const int64_t max = cgroup_value(dir + max_file), used = cgroup_value(dir + used_file);
    if (max > 0 && max < (int64_t{1} << 60) && used >= 0) avail = avail < 0 ? max - used : std::min(avail, max - used);
  };
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) == 0) {
      const std::string path = line.substr(3);
      limit("/sys/fs/cgroup" + (path == "/" ? std::string() : path), "/memory.max", "/memory.current");
    } else if (const auto at = line.find(":memory:"); at != std::string::npos) {
      const std::string path = line.substr(at + 8);
      // inside a container the controller's own root is usually mounted at the top
      for (const std::string& dir : {"/sys/fs/cgroup/memory" + path, std::string("/sys/fs/cgroup/memory")})
        limit(dir, "/memory.limit_in_bytes", "/memory.usage_in_bytes");
    }
  }
  return std::max<int64_t>(avail, avail < 0 ? -1 : 0);
}

}  // namespace mmtune
