#include <mmtune/core/strings.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace mmtune {

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.emplace_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

namespace {

// Levenshtein distance, or anything above `bound` once every entry of a row exceeds it (the
// distance can only grow from there).
std::size_t edit_distance_up_to(std::string_view a, std::string_view b, std::size_t bound) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];  // row[i-1][j-1]
    row[0] = i;
    std::size_t row_min = row[0];
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min(std::min(row[j], row[j - 1]) + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1));
      row_min = std::min(row_min, row[j]);
      diag = up;
    }
    if (row_min > bound) return row_min;
  }
  return row[b.size()];
}

}  // namespace

std::size_t edit_distance(std::string_view a, std::string_view b) {
  return edit_distance_up_to(a, b, std::max(a.size(), b.size()));
}

std::optional<std::string> closest_match(std::string_view word,
                                         const std::vector<std::string>& candidates) {
  const std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
  std::optional<std::string> best;
  std::size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    // The distance is at least the length difference: skip what cannot win (a long key would
    // otherwise cost |word| x |c| per candidate).
    const std::size_t gap = word.size() > c.size() ? word.size() - c.size() : c.size() - word.size();
    if (gap >= best_d) continue;
    const std::size_t d = edit_distance_up_to(word, c, best_d - 1);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  if (!best && !word.empty()) {  // an abbreviation: "proj" -> "projector"
    for (const auto& c : candidates) {
      if (c.size() > word.size() && c.compare(0, word.size(), word) == 0) return c;
    }
  }
  return best;
}

std::string format_double(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round-trip form
  std::string s(buf, res.ptr);
  // "1e-04" -> "1e-4", "1e+20" -> "1e20": the exponent as a person writes it.
  if (auto e = s.find('e'); e != std::string::npos) {
    std::string mant = s.substr(0, e), exp = s.substr(e + 1);
    bool neg = !exp.empty() && exp[0] == '-';
    if (!exp.empty() && (exp[0] == '-' || exp[0] == '+')) exp.erase(0, 1);
    exp.erase(0, std::min(exp.find_first_not_of('0'), exp.size() - 1));
    return mant + "e" + (neg ? "-" : "") + exp;
  }
  if (s.find('.') == std::string::npos) s += ".0";  // keep it visibly a float: 10 -> 10.0
  return s;
}

std::string trim(std::string_view s) {
  const size_t a = s.find_first_not_of(kWhitespace);
  if (a == std::string_view::npos) return "";
  return std::string(s.substr(a, s.find_last_not_of(kWhitespace) - a + 1));
}

}  // namespace mmtune
