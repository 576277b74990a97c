// How much memory this process may still take: what checks sizes from configs and files against
// before anything is allocated (a config asking for 100 GB must be an error, not the OOM killer).
#pragma once

#include <cstdint>

namespace mmtune {

/// The smaller of the kernel's MemAvailable (+ SwapFree) and, under a cgroup v2 memory limit,
/// memory.max - memory.current; -1 when neither can be read (not Linux).
int64_t available_memory_bytes();

/// This process's peak resident set size (VmHWM) in bytes, or -1 when unknown (not Linux).
int64_t peak_rss_bytes();
/// This process's resident set size now (VmRSS) in bytes, or -1 when unknown.
int64_t current_rss_bytes();

}  // namespace mmtune
