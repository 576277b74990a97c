#include <mmtune/core/terminal.h>

#include <cmath>
#include <cstdint>
#include <iomanip>
#include <sstream>

#include <unistd.h>

namespace mmtune {

bool stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  const int64_t h = s / 3600, m = (s % 3600) / 60, sec = s % 60;
  std::ostringstream o;
  if (h)
    o << h << "h" << std::setw(2) << std::setfill('0') << m << "m" << std::setw(2) << sec << "s";
  else if (m)
    o << m << "m" << std::setw(2) << std::setfill('0') << sec << "s";
  else
    o << sec << "s";
  return o.str();
}

}  // namespace mmtune
