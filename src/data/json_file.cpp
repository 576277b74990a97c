// One JSON file of a data set -> its document, or a DataError naming the file (see json_file.h).
#include "json_file.h"

#include <filesystem>
#include <fstream>

#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

namespace mmtune::data {

nlohmann::json read_json_data_file(const std::string& path, const std::string& what, const std::string& location_hint,
                                   const std::string& format_hint) {
  // Streamed into the parser, not read whole first: a LLaVA conversations file can be a gigabyte,
  // and the document costs more than its text anyway.
  std::ifstream f(path);
  if (!f) {
    std::error_code ec;
    throw DataError(path, std::filesystem::exists(path, ec) ? cat("cannot open the ", what) : cat(what, " not found"),
                    location_hint);
  }
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number too large (fuzz)
    throw DataError(path, cat("the ", what, " is not valid JSON: ", e.what()), format_hint);
  }
}

}  // namespace mmtune::data
