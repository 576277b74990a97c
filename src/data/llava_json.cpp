// LLaVA conversation JSON -> Examples through a conversation template (see llava_json.h).
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/llava_json.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "json_file.h"

namespace mmtune::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kFormatHint =
    "expected a JSON list of {\"id\", \"image\" (optional), \"conversations\": [{\"from\": "
    "\"human\" | \"gpt\", "
    "\"value\": ...}, ...]} (LLaVA's format)";

std::string remove_all(std::string s, const std::string& what) {
  for (size_t p; !what.empty() && (p = s.find(what)) != std::string::npos;) s.erase(p, what.size());
  return s;
}

json read_conversations(const std::string& path) {
  json j = read_json_data_file(path, "conversations file", "set data.json to a LLaVA-format .json file", kFormatHint);
  if (!j.is_array()) throw DataError(path, "the top level is not a list", kFormatHint);
  return j;
}

Role role_of(const std::string& from) {
  if (from == "human" || from == "user") return Role::kUser;
  if (from == "gpt" || from == "assistant") return Role::kAssistant;
  if (from == "system") return Role::kSystem;
  throw Error("unknown speaker \"from\": \"" + from + "\"",
              "use human | gpt (or user | assistant | system)");
}

std::vector<Turn> read_turns(const json& conv) {
  if (!conv.is_array() || conv.empty())
    throw Error("\"conversations\" is missing or not a non-empty list", kFormatHint);
  std::vector<Turn> turns;
  for (const json& t : conv) {
    if (!t.is_object() || !t.contains("from") || !t["from"].is_string() || !t.contains("value") ||
        !t["value"].is_string()) {
      throw Error("a turn is not {\"from\": string, \"value\": string}", kFormatHint);
    }
    turns.push_back({role_of(t["from"].get<std::string>()), t["value"].get<std::string>()});
  }
  return turns;
}

// LLaVA's preprocess_multimodal: the placeholder leads the first user turn, followed by "\n". The
// files mark the image with "<image>"; a family whose placeholder is another string (IAA's Llama-3
// reserved token) gets its own in that place.
void place_image_token(std::vector<Turn>& turns, const std::string& placeholder) {
  static const std::string kFilePlaceholder = "<image>";
  bool first_user = true;
  for (Turn& t : turns) {
    for (const std::string& p : {kFilePlaceholder, placeholder})
      if (t.text.find(p) != std::string::npos) t.text = trim(remove_all(t.text, p));
    if (t.role == Role::kUser && first_user) {
      t.text = placeholder + "\n" + trim(t.text);
      first_user = false;
    }
  }
}

std::string sample_id(const json& entry, size_t index) {
  if (entry.contains("id")) {
    const json& id = entry["id"];
    if (id.is_string()) return id.get<std::string>();
    if (id.is_number_integer()) return id.dump();
  }
  return cat("#", index);  // no usable id: the entry's position
}

}  // namespace

LlavaJsonOptions llava_json_options(const config::DataConfig& data, const SequenceLayout& layout) {
  LlavaJsonOptions o;
  o.json_path = data.json;
  o.image_folder = data.image_folder;
  o.chat_template = parse_template(data.template_name);
  o.image_placeholder = layout.image_placeholder;
  o.skip_bad_samples = data.on_bad_sample == "skip";
  o.limit = data.limit;
  return o;
}

LlavaJsonData read_llava_json(const LlavaJsonOptions& o) {
  const json j = read_conversations(o.json_path);
  // LLaVA requires an image folder; without one, paths are relative to the JSON file's folder
  const fs::path folder =
      o.image_folder.empty() ? fs::path(o.json_path).parent_path() : fs::path(o.image_folder);
  const size_t n = o.limit > 0 ? std::min(j.size(), static_cast<size_t>(o.limit)) : j.size();
  LlavaJsonData out;
  out.examples.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const json& entry = j[i];
    const std::string id = entry.is_object() ? sample_id(entry, i) : cat("#", i);
    Example ex;
    ex.id = id;
    try {
      if (!entry.is_object()) throw Error("not an object", kFormatHint);
      std::vector<Turn> turns =
          read_turns(entry.contains("conversations") ? entry["conversations"] : json());
      if (entry.contains("image")) {
        if (!entry["image"].is_string()) {
          throw Error("\"image\" is not a string",
                      "one image per sample, given as a path relative to data.image_folder");
        }
        ex.image_path = (folder / entry["image"].get<std::string>()).string();
        place_image_token(turns, o.image_placeholder);
      }
      Rendered r = render(o.chat_template, turns);
      ex.prompt = std::move(r.prompt);
      ex.answer = std::move(r.answer);
    } catch (const Error& e) {
      throw DataError(o.json_path, cat("entry ", i, " (id '", id, "'): ", e.what()), e.hint());
    }
    std::error_code ec;
    if (!ex.image_path.empty() && !fs::is_regular_file(ex.image_path, ec)) {  // ec: a name too long is "not found"
      if (!o.skip_bad_samples) {
        throw DataError(
            ex.image_path,
            cat("image of sample '", id, "' (entry ", i, " of ", o.json_path, ") not found"),
            "check data.image_folder, or set data.on_bad_sample: skip to drop such samples (they "
            "are "
            "counted)");
      }
      ++out.skipped;
      out.skipped_ids.push_back(id);
      continue;
    }
    out.examples.push_back(std::move(ex));
  }
  return out;
}

}  // namespace mmtune::data
