// The JSON document in a data set's file (ScienceQA's problems / splits / captions, a LLaVA
// conversations file), for the readers in this folder. Private to mmtune_data.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace mmtune::data {

/// Parses the file at `path`. Every problem is a DataError naming the file: "<what> not found" or
/// "cannot open the <what>" with `location_hint` (where such a file comes from), "the <what> is not
/// valid JSON: ..." with `format_hint` (what it should hold). The readers check the shape.
nlohmann::json read_json_data_file(const std::string& path, const std::string& what, const std::string& location_hint,
                                   const std::string& format_hint);

}  // namespace mmtune::data
