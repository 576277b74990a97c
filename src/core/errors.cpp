#include <mmtune/core/errors.h>

namespace mmtune {
namespace {

std::string summarize(const std::vector<ConfigProblem>& problems) {
  if (problems.size() == 1) return problems.front().one_line();
  std::string s = std::to_string(problems.size()) + " config problems:";
  for (const auto& p : problems) s += "\n  " + p.one_line();
  return s;
}

}  // namespace

std::string Error::one_line() const {
  std::string s = what();
  if (!hint_.empty()) s += " (hint: " + hint_ + ")";
  return s;
}

std::string ConfigProblem::one_line() const {
  std::string s;
  if (!location.empty()) s += location + ": ";
  if (!key.empty()) s += key + ": ";
  s += message;
  if (!hint.empty()) s += " (" + hint + ")";
  return s;
}

ConfigError::ConfigError(std::vector<ConfigProblem> problems)
    : Error(summarize(problems)), problems_(std::move(problems)) {}

}  // namespace mmtune
