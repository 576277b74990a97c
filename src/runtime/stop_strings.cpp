#include <mmtune/runtime/stop_strings.h>

#include <algorithm>

namespace mmtune::runtime {

size_t find_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = std::string::npos;
  for (const auto& s : stops)
    if (!s.empty()) best = std::min(best, text.find(s));
  return best;
}

size_t stop_safe_end(const std::string& text, const std::vector<std::string>& stops) {
  size_t end = text.size();
  for (const auto& s : stops) {
    if (s.empty()) continue;
    for (size_t k = std::min(s.size() - 1, text.size()); k > 0; --k) {
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        end = std::min(end, text.size() - k);
        break;
      }
    }
  }
  return end;
}

}  // namespace mmtune::runtime
