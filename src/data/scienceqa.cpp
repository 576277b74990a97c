// ScienceQA's official files -> Examples with LaVIN's prompts (see scienceqa.h).
#include <filesystem>
#include <nlohmann/json.hpp>

#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/scienceqa.h>

#include "json_file.h"

namespace mmtune::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kLayoutHint =
    "data.root is the ScienceQA folder with problems.json, pid_splits.json and "
    "images/<split>/<pid>/"
    "image.png (the official download's layout)";

// The field `key` as a string: absent or null -> "" unless required; anything else is an error.
std::string text_field(const json& problem, const char* key, bool required) {
  auto it = problem.find(key);
  if (it == problem.end() || it->is_null()) {
    if (required) throw Error(cat("\"", key, "\" is missing"), "");
    return "";
  }
  if (!it->is_string()) throw Error(cat("\"", key, "\" is not a string"), "");
  return it->get<std::string>();
}

ScienceQAProblem parse_problem(const std::string& pid, const json& j) {
  if (!j.is_object()) throw Error("is not an object", "");
  ScienceQAProblem p;
  p.pid = pid;
  p.text.question = text_field(j, "question", true);
  auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->empty()) {
    throw Error("\"choices\" is missing or not a non-empty list", "");
  }
  for (const json& c : *choices) {
    if (!c.is_string()) throw Error("a choice is not a string", "");
    p.text.choices.push_back(c.get<std::string>());
  }
  auto answer = j.find("answer");
  if (answer == j.end() || !answer->is_number_integer()) {
    throw Error("\"answer\" is missing or not an integer", "");
  }
  p.text.answer_index = answer->get<int64_t>();
  if (p.text.answer_index < 0 ||
      p.text.answer_index >= static_cast<int64_t>(p.text.choices.size())) {
    throw Error(cat("\"answer\" ", p.text.answer_index, " is not an index into its ",
                    p.text.choices.size(), " choices"),
                "");
  }
  p.text.hint = text_field(j, "hint", false);
  p.text.lecture = text_field(j, "lecture", false);
  p.text.solution = text_field(j, "solution", false);
  auto image = j.find("image");
  if (image != j.end() && !image->is_null()) {
    if (!image->is_string() || image->get<std::string>().empty()) {
      throw Error("\"image\" is neither null nor a file name", "");
    }
    p.image = image->get<std::string>();
  }
  p.task = text_field(j, "task", false);
  p.grade = text_field(j, "grade", false);
  p.subject = text_field(j, "subject", false);
  p.topic = text_field(j, "topic", false);
  p.category = text_field(j, "category", false);
  p.skill = text_field(j, "skill", false);
  p.split = text_field(j, "split", false);
  return p;
}

std::string id_text(const json& id) {
  if (id.is_string()) return id.get<std::string>();
  if (id.is_number_integer()) return id.dump();
  throw Error("a pid is neither a string nor an integer", "");
}

Example make_example(const ScienceQAProblem& p, const ScienceQAOptions& o,
                     const std::string& split) {
  Example ex;
  ex.id = p.pid;
  PromptPair pair = build_prompt(p.text, o.prompt_format, o.use_caption);
  ex.prompt = std::move(pair.prompt);
  ex.answer = std::move(pair.answer);
  ex.choices = p.text.choices;
  ex.answer_index = p.text.answer_index;
  if (p.image) {
    const std::string folder = p.split.empty() ? split : p.split;
    ex.image_path = (fs::path(o.root) / "images" / folder / p.pid / *p.image).string();
  }
  ex.meta = {{"subject", p.subject},
             {"grade", p.grade},
             {"hint", p.text.hint},
             {"image", p.image.value_or("")},
             {"has_image", p.image ? "1" : "0"},
             {"task", p.task},
             {"topic", p.topic},
             {"category", p.category},
             {"skill", p.skill},
             {"split", p.split}};
  return ex;
}

}  // namespace

ScienceQAOptions scienceqa_options(const config::DataConfig& data) {
  ScienceQAOptions o;
  o.root = data.root;
  o.problems_file = data.problems_file;
  o.splits_file = data.splits_file;
  o.captions_file = data.captions_file;
  o.use_caption = data.use_caption;
  o.prompt_format = parse_prompt_format(data.prompt_format);
  o.skip_bad_samples = data.on_bad_sample == "skip";
  o.limit = data.limit;
  return o;
}

std::string scienceqa_path(const std::string& root, const std::string& file) {
  if (root.empty() || fs::path(file).is_absolute()) return file;
  return (fs::path(root) / file).string();
}

std::map<std::string, ScienceQAProblem> read_scienceqa_problems(const std::string& path) {
  const char* hint =
      "problems.json is an object {pid: {question, choices, answer, hint, image, ...}}";
  const json j = read_json_data_file(path, "problems file", kLayoutHint, hint);
  if (!j.is_object()) throw DataError(path, "the top level is not an object", hint);
  std::map<std::string, ScienceQAProblem> problems;
  for (const auto& [pid, entry] : j.items()) {
    try {
      problems.emplace(pid, parse_problem(pid, entry));
    } catch (const Error& e) {
      throw DataError(path, cat("problem '", pid, "': ", e.what()), hint);
    }
  }
  return problems;
}

std::map<std::string, std::vector<std::string>> read_scienceqa_splits(const std::string& path) {
  const char* hint = "pid_splits.json is an object {split: [pid, ...]} (train, val, test, ...)";
  const json j = read_json_data_file(path, "splits file", kLayoutHint, hint);
  if (!j.is_object()) throw DataError(path, "the top level is not an object", hint);
  std::map<std::string, std::vector<std::string>> splits;
  for (const auto& [name, ids] : j.items()) {
    if (!ids.is_array())
      throw DataError(path, cat("split '", name, "' is not a list of pids"), hint);
    auto& out = splits[name];
    out.reserve(ids.size());
    try {
      for (const json& id : ids) out.push_back(id_text(id));
    } catch (const Error& e) {
      throw DataError(path, cat("split '", name, "': ", e.what()), hint);
    }
  }
  return splits;
}

std::map<std::string, std::string> read_scienceqa_captions(const std::string& path) {
  const char* hint = "captions.json is {\"captions\": {pid: caption}, ...} (ScienceQA's file)";
  const json j = read_json_data_file(path, "captions file", kLayoutHint, hint);
  auto captions = j.is_object() ? j.find("captions") : j.end();
  if (captions == j.end() || !captions->is_object()) {
    throw DataError(path, "no \"captions\" object", hint);
  }
  std::map<std::string, std::string> out;
  for (const auto& [pid, caption] : captions->items()) {
    if (!caption.is_string())
      throw DataError(path, cat("the caption of '", pid, "' is not a string"), hint);
    out.emplace(pid, caption.get<std::string>());
  }
  return out;
}

ScienceQAData read_scienceqa(const ScienceQAOptions& o, const std::string& split) {
  const std::string problems_path = scienceqa_path(o.root, o.problems_file);
  const std::string splits_path = scienceqa_path(o.root, o.splits_file);
  if (o.use_caption && o.captions_file.empty()) {
    throw DataError(
        problems_path, "use_caption is set but there is no captions file",
        "set data.captions_file (ScienceQA's captions.json) or data.use_caption: false");
  }
  ScienceQAData out;
  const auto splits = read_scienceqa_splits(splits_path);
  for (const auto& [name, ids] : splits) out.available_splits.push_back(name);
  auto pids = splits.find(split);
  if (pids == splits.end()) {
    throw DataError(splits_path, cat("no split '", split, "'"),
                    cat("available splits: ", join(out.available_splits, ", ")));
  }
  auto problems = read_scienceqa_problems(problems_path);
  std::map<std::string, std::string> captions;
  if (!o.captions_file.empty())
    captions = read_scienceqa_captions(scienceqa_path(o.root, o.captions_file));

  const size_t n = o.limit > 0 ? std::min(pids->second.size(), static_cast<size_t>(o.limit))
                               : pids->second.size();
  out.examples.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& pid = pids->second[i];
    auto it = problems.find(pid);
    if (it == problems.end()) {
      throw DataError(
          problems_path,
          cat("pid '", pid, "' of split '", split, "' (", splits_path,
              ") is not in the problems file"),
          "problems.json and pid_splits.json must come from the same ScienceQA release");
    }
    ScienceQAProblem& p = it->second;
    if (auto c = captions.find(pid); c != captions.end()) p.text.caption = c->second;
    Example ex;
    try {
      ex = make_example(p, o, split);
    } catch (const Error& e) {
      throw DataError(problems_path, cat("problem '", pid, "': ", e.what()), e.hint());
    }
    std::error_code ec;
    if (o.check_images && !ex.image_path.empty() && !fs::is_regular_file(ex.image_path, ec)) {  // no throw
      if (!o.skip_bad_samples) {
        throw DataError(
            ex.image_path, cat("image of problem '", pid, "' (split '", split, "') not found"),
            "check data.root's images/<split>/<pid>/ folders, or set data.on_bad_sample: skip "
            "to drop such samples (they are counted)");
      }
      ++out.skipped;
      out.skipped_ids.push_back(pid);
      continue;
    }
    out.examples.push_back(std::move(ex));
  }
  return out;
}

}  // namespace mmtune::data
