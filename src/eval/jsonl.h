// Reading the JSONL task files of the mcq and grounding tasks, and ordering gathered records
// (private to src/eval).
#pragma once

#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mmtune::eval::detail {

/// One parsed line of a JSONL file with its 1-based line number.
struct JsonLine {
  int64_t line = 0;
  nlohmann::json value;
};

/// The objects of `path`, one per non-blank line; `limit` > 0 keeps the first N. Throws DataError
/// naming the file and line for a missing file, bad JSON or a line that is not an object.
inline std::vector<JsonLine> read_jsonl_objects(const std::string& path, int64_t limit) {
  std::ifstream f(path);
  if (!f) throw DataError(path, "cannot read the task file", "set eval.data (or --data) to a JSONL file");
  std::vector<JsonLine> out;
  std::string text;
  for (int64_t n = 1; std::getline(f, text); ++n) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    JsonLine l{n, {}};
    try {
      l.value = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(path, cat("line ", n, " is not JSON: ", e.what()), "one JSON object per line");
    }
    if (!l.value.is_object()) throw DataError(path, cat("line ", n, " is not a JSON object"), "one JSON object per line");
    out.push_back(std::move(l));
    if (limit > 0 && static_cast<int64_t>(out.size()) == limit) break;
  }
  if (out.empty()) throw DataError(path, "holds no items", "one JSON object per line");
  return out;
}

/// A required string field (numbers are taken as their text, for ids).
inline std::string string_field(const std::string& path, const JsonLine& l, const char* key, bool required = true) {
  const auto it = l.value.find(key);
  if (it == l.value.end() || it->is_null()) {
    if (!required) return {};
    throw DataError(path, cat("line ", l.line, " has no \"", key, "\""), "see the task's JSONL layout in mmtune eval --help");
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  throw DataError(path, cat("line ", l.line, ": \"", key, "\" must be a string"));
}

/// `image` resolved against `folder` (data.image_folder), else against the JSONL file's folder;
/// "" stays "" (a text-only item). The file must exist.
inline std::string resolve_image(const std::string& path, const JsonLine& l, const std::string& image,
                                 const std::string& folder) {
  namespace fs = std::filesystem;
  if (image.empty()) return {};
  fs::path p(image);
  if (p.is_relative()) p = (folder.empty() ? fs::path(path).parent_path() : fs::path(folder)) / p;
  if (!fs::exists(p))
    throw DataError(p.string(), cat("image of line ", l.line, " of ", path, " not found"),
                    "\"image\" is relative to data.image_folder, or to the JSONL file's folder when that is empty");
  return p.string();
}

/// Gathered per-item records (JSON objects with an "index" field) parsed and put in item order;
/// throws mmtune::Error naming `task` when an item is missing (a rank lost it) or duplicated.
inline std::vector<nlohmann::json> records_by_index(const std::vector<std::string>& records, size_t n,
                                                    const std::string& task) {
  std::vector<nlohmann::json> out(n);
  for (const auto& r : records) {
    nlohmann::json j = nlohmann::json::parse(r);
    const auto i = j.at("index").get<size_t>();  // read before the move: json's operator= takes its argument by value
    if (i >= n || !out[i].is_null()) throw Error(cat(task, ": record ", i, " is out of range or came back twice"));
    out[i] = std::move(j);
  }
  for (size_t i = 0; i < n; ++i) {
    if (out[i].is_null())
      throw Error(cat(task, ": the answer to item ", i, " did not come back from its rank"), "rerun; report it if it persists");
  }
  return out;
}

}  // namespace mmtune::eval::detail
