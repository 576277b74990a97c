// The only translation unit that includes spdlog (see the note in logging.h).
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>

#include <algorithm>
#include <filesystem>
#include <mutex>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace mmtune::log {
namespace {

struct State {
  std::mutex mu;
  std::shared_ptr<spdlog::logger> logger;
  std::shared_ptr<spdlog::sinks::basic_file_sink_mt> file;
  Level level = Level::kInfo;
  int rank = 0;
  int world = 1;
};

State& state() {
  static State s;
  return s;
}

spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

// Rank 0 logs at the requested level; others only warnings and up, unless debugging.
Level effective(const State& s) {
  if (s.rank == 0 || s.level <= Level::kDebug) return s.level;
  return std::max(s.level, Level::kWarn);
}

std::string pattern(const State& s) {
  return "[%Y-%m-%d %H:%M:%S.%e] [rank " + std::to_string(s.rank) + "/" + std::to_string(s.world) +
         "] [%l] %v";
}

// Callers hold s.mu.
spdlog::logger& logger_locked(State& s) {
  if (!s.logger) {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    s.logger = std::make_shared<spdlog::logger>("mmtune", console);
    s.logger->set_pattern(pattern(s));
    s.logger->set_level(to_spd(effective(s)));
    s.logger->flush_on(spdlog::level::warn);
  }
  return *s.logger;
}

}  // namespace

void init(Level level, int rank, int world_size) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.level = level;
  s.rank = rank;
  s.world = world_size;
  auto& lg = logger_locked(s);
  lg.set_pattern(pattern(s));
  lg.set_level(to_spd(effective(s)));
}

void add_file(const std::string& path) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto& lg = logger_locked(s);
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
    sink->set_pattern(pattern(s));
    if (s.file) {
      auto& sinks = lg.sinks();
      sinks.erase(std::remove(sinks.begin(), sinks.end(), s.file), sinks.end());
    }
    s.file = sink;
    lg.sinks().push_back(sink);
  } catch (const spdlog::spdlog_ex& e) {
    throw Error("cannot open log file " + path + ": " + e.what(),
                "check that the output directory is writable");
  }
}

void close_file() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.file || !s.logger) return;
  s.logger->flush();
  auto& sinks = s.logger->sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(), s.file), sinks.end());
  s.file.reset();
}

void set_level(Level level) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.level = level;
  logger_locked(s).set_level(to_spd(effective(s)));
}

Level level() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.level;
}

bool enabled(Level l) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return l != Level::kOff && l >= effective(s);
}

void write(Level l, std::string_view message) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  auto& lg = logger_locked(s);
  lg.log(to_spd(l), "{}", message);
  if (s.file) s.file->flush();
}

int backend_fmt_version() { return FMT_VERSION; }

std::optional<Level> parse_level(std::string_view name) {
  if (name == "trace") return Level::kTrace;
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  return std::nullopt;
}

}  // namespace mmtune::log
