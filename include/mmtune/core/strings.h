// Small string helpers used across layers (no torch, no fmt: safe in every translation unit).
#pragma once

#include <cstddef>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace mmtune {

/// Concatenates anything with an operator<< into a string: cat("step ", 3, " loss ", 0.5).
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

/// Joins strings with a separator.
std::string join(const std::vector<std::string>& parts, std::string_view sep);

/// Splits on a single character; keeps empty parts.
std::vector<std::string> split(std::string_view s, char sep);

/// Levenshtein distance (insert, delete, substitute; each costs 1).
std::size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to `word` by edit distance, if it is close enough to be a plausible typo
/// (distance <= max(2, |word| / 3)), else the first candidate that `word` abbreviates (is a
/// prefix of). Ties go to the earlier candidate.
std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates);

/// Shortest decimal text that parses back to the same double; exponent without padding ("1e-4").
std::string format_double(double v);

/// The ASCII whitespace trim() drops.
inline constexpr std::string_view kWhitespace = " \t\n\r\f\v";

/// `s` without leading and trailing whitespace (kWhitespace).
std::string trim(std::string_view s);

}  // namespace mmtune
