// Stop strings (`stop` of generate, chat and the server's requests): where a decoded text ends.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mmtune::runtime {

/// Position of the earliest stop string in `text` (empty ones ignored), or npos.
size_t find_stop(const std::string& text, const std::vector<std::string>& stops);

/// For streaming: the bytes of `text` that no stop string can still claim, i.e. everything before
/// a tail that is a proper prefix of a stop string (later tokens may complete it).
size_t stop_safe_end(const std::string& text, const std::vector<std::string>& stops);

}  // namespace mmtune::runtime
