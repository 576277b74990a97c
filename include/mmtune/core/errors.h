// mmtune's error types. Library code throws; only main() catches and turns an error into one clean
// line plus an exit code (2 usage/config, 1 runtime, 130 interrupted).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace mmtune {

/// Exit codes of the mmtune binary.
enum class ExitCode : int { kOk = 0, kRuntime = 1, kUsage = 2, kInterrupted = 130 };

/// Base of every error mmtune reports to a user: a message and a hint on what to do about it.
class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, std::string hint = {})
      : std::runtime_error(std::move(message)), hint_(std::move(hint)) {}
  const std::string& hint() const { return hint_; }
  virtual ExitCode exit_code() const { return ExitCode::kRuntime; }
  /// "message (hint: ...)" on one line.
  std::string one_line() const;

 private:
  std::string hint_;
};

/// Bad command line: unknown flag, missing argument, a verb that is not built yet.
class UsageError : public Error {
 public:
  using Error::Error;
  ExitCode exit_code() const override { return ExitCode::kUsage; }
};

/// One problem found in a config: where (file:line:col or the override), which key, what is wrong.
struct ConfigProblem {
  std::string location;  // "configs/x.yaml:12:3" or "override 'train.lr=abc'"
  std::string key;       // dotted path, "train.lr"; empty for whole-file problems
  std::string message;
  std::string hint;      // e.g. "did you mean train.lr?"
  std::string one_line() const;
};

/// Every problem of a config at once (torchtune's validate style), so a user fixes them in one go.
class ConfigError : public Error {
 public:
  explicit ConfigError(std::vector<ConfigProblem> problems);
  const std::vector<ConfigProblem>& problems() const { return problems_; }
  ExitCode exit_code() const override { return ExitCode::kUsage; }

 private:
  std::vector<ConfigProblem> problems_;
};

/// A checkpoint (safetensors, adapter, trainer state) that cannot be read or does not fit the model.
class CheckpointError : public Error {
 public:
  CheckpointError(std::string path, std::string message, std::string hint = {})
      : Error(path + ": " + message, std::move(hint)), path_(std::move(path)) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A data set, sample or image that cannot be read.
class DataError : public Error {
 public:
  DataError(std::string path, std::string message, std::string hint = {})
      : Error(path + ": " + message, std::move(hint)), path_(std::move(path)) {}
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// The user pressed Ctrl-C; unwinds to main(), which exits 130.
class Interrupted : public Error {
 public:
  Interrupted() : Error("interrupted") {}
  ExitCode exit_code() const override { return ExitCode::kInterrupted; }
};

}  // namespace mmtune
