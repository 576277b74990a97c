// A monotonic clock in seconds, for deadlines and latencies (not wall time).
#pragma once

#include <chrono>

namespace mmtune {

inline double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace mmtune
