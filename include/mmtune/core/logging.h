// Rank-aware logging: "[time] [rank r/w] [level] message" to the console and, once a run has an
// output directory, to a log file there.
//
// This header includes neither spdlog nor fmt, on purpose: torch's include directory carries its
// own fmt (12.x) while Debian's spdlog is built on fmt 9, so a translation unit that sees torch's
// include path first must never instantiate spdlog templates. Messages are built with operator<<
// (which also prints tensors and sizes) and handed to src/core/logging.cpp, the only file that
// includes spdlog; its library (mmtune_log) does not link torch. tests/unit/core/test_logging.cpp
// proves it from a torch translation unit.
#pragma once

#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace mmtune::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kOff };

/// Console logging for this process. Non-zero ranks log warnings and errors only, unless the level
/// asked for is debug or trace (then every rank logs at that level).
void init(Level level, int rank = 0, int world_size = 1);
/// Also writes every message (at the current level) to `path`, appending; creates parent dirs.
/// Throws mmtune::Error if the file cannot be opened.
void add_file(const std::string& path);
/// Flushes and detaches the log file, if any.
void close_file();
void set_level(Level level);
Level level();
bool enabled(Level level);
/// Writes one message; thread-safe.
void write(Level level, std::string_view message);
/// FMT_VERSION of the fmt that spdlog formats with inside mmtune_log (Debian's, 9.x): lets a test
/// prove that a torch translation unit (which sees torch's fmt) logs through it safely.
int backend_fmt_version();
/// "trace" | "debug" | "info" | "warn" | "error" | "off".
std::optional<Level> parse_level(std::string_view name);

/// One log line built with operator<<, written when it goes out of scope.
class Line {
 public:
  explicit Line(Level level) : level_(level), on_(enabled(level)) {}
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  ~Line() {
    if (on_) write(level_, os_.str());
  }
  template <class T>
  Line& operator<<(const T& v) {
    if (on_) os_ << v;
    return *this;
  }

 private:
  Level level_;
  bool on_;
  std::ostringstream os_;
};

inline Line trace() { return Line(Level::kTrace); }
inline Line debug() { return Line(Level::kDebug); }
inline Line info() { return Line(Level::kInfo); }
inline Line warn() { return Line(Level::kWarn); }
inline Line error() { return Line(Level::kError); }

}  // namespace mmtune::log
