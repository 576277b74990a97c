// Helpers shared by mmtune's test executables.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "test_paths.h"

namespace mmtune::testing {

/// A fresh directory under the build tree's test scratch area, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  /// Writes `text` to path()/name and returns the full path.
  std::string write(const std::string& name, const std::string& text) const;

 private:
  std::string path_;
};

struct ProcessResult {
  int exit_code = -1;  // 128 + signal if killed by a signal; -1 if it timed out (then killed)
  std::string out;
  std::string err;
};

/// Runs `argv` with extra environment variables, waits at most `timeout`.
ProcessResult run_process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
                          std::chrono::seconds timeout = std::chrono::seconds(60));

/// Starts `argv` in the background; returns its pid (stdout/stderr to the given files).
int spawn_process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                  const std::string& out_path, const std::string& err_path);
/// Waits for `pid`; returns its exit code as run_process does.
int wait_process(int pid, std::chrono::seconds timeout);

/// A TCP port that was free a moment ago (bind to port 0, read it back).
int free_port();

std::string read_text(const std::string& path);

}  // namespace mmtune::testing
