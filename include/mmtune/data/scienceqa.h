// The ScienceQA benchmark in its official layout (data.format: scienceqa; spec §1.9):
//
//   <root>/problems.json      {pid: {question, choices[], answer (0-based index), hint,
//                                    image (file name or null), task, grade, subject, topic,
//                                    category, skill, lecture, solution, split}}
//   <root>/pid_splits.json    {split: [pid, ...]}: train, val, test, trainval, minitrain, ...
//   <root>/captions.json      optional: {"captions": {pid: caption}, ...}; only with use_caption
//   <root>/images/<split>/<pid>/<image>   e.g. images/train/12/image.png
//
// One Example per pid of the requested split, in pid_splits.json's order: prompt and answer from
// LaVIN's builder (prompt.h), the choices and answer index, the image path, and meta for the
// category tables (eval/scienceqa_score.h); for generation (eval) a caller clears Example::answer,
// which collate then lays out as a prompt to complete. The image folder is the problem's own
// "split" field (train / val / test: where the official download keeps it), so trainval and the
// mini splits find their images too; a problem without that field uses the requested split's name.
// question, choices and answer are required in every problem; the other fields default to "".
// Image files are checked for existence here (decoding happens in collate): a missing one is a
// DataError naming the pid and the path, or with skip_bad_samples the sample is dropped and
// counted. A file that cannot be read or parsed, an unknown split, a pid of the split missing
// from problems.json or a malformed problem is always an error (skipping would hide a mismatch).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/data/batch.h>
#include <mmtune/data/prompt.h>

namespace mmtune::data {

/// One entry of problems.json.
struct ScienceQAProblem {
  std::string pid;
  ProblemText text;                  // question, hint, choices, answer, lecture, solution, caption
  std::optional<std::string> image;  // the image's file name ("image.png"); nullopt = text-only
  std::string task, grade, subject, topic, category, skill, split;
};

struct ScienceQAOptions {
  std::string root;                             // data.root
  std::string problems_file = "problems.json";  // relative paths are relative to root
  std::string splits_file = "pid_splits.json";
  std::string captions_file;      // "" = none
  bool use_caption = false;       // put the caption into the context
  PromptFormat prompt_format;     // data.prompt_format (QCM-ALE)
  bool check_images = true;       // require each image file to exist
  bool skip_bad_samples = false;  // data.on_bad_sample: skip (missing image)
  int64_t limit = 0;              // the split's first N pids only; 0 = all
};

/// The options from `data` (root, problems_file, splits_file, captions_file, use_caption,
/// prompt_format, on_bad_sample, limit). Throws mmtune::ConfigError for an unknown prompt format.
ScienceQAOptions scienceqa_options(const config::DataConfig& data);

/// `file` resolved against `root` (unchanged when absolute or when root is empty).
std::string scienceqa_path(const std::string& root, const std::string& file);

/// Reads problems.json. Throws mmtune::DataError naming the file (and the pid and field for a
/// malformed problem): missing file, invalid JSON, a top level that is not an object, a problem
/// without question / choices / answer, a field of the wrong type, or an answer outside choices.
std::map<std::string, ScienceQAProblem> read_scienceqa_problems(const std::string& path);

/// Reads pid_splits.json: split name -> pids in file order (numbers are taken as their decimal
/// text). Throws mmtune::DataError naming the file when it is missing, not JSON, or not
/// {name: [pid, ...]}.
std::map<std::string, std::vector<std::string>> read_scienceqa_splits(const std::string& path);

/// Reads captions.json's "captions" object: pid -> caption. Throws mmtune::DataError naming the
/// file when it is missing, not JSON, or has no "captions" object of strings.
std::map<std::string, std::string> read_scienceqa_captions(const std::string& path);

struct ScienceQAData {
  std::vector<Example> examples;
  std::vector<std::string> available_splits;  // the splits pid_splits.json offers
  int64_t skipped = 0;                        // samples dropped for a missing image (skip mode)
  std::vector<std::string> skipped_ids;       // their pids, in split order
};

/// The Examples of `split` (see the file comment). meta holds "subject", "grade", "hint",
/// "image" (the file name, "" when none), "has_image" ("1" / "0"), "task", "topic", "category",
/// "skill" and "split" (the problem's own). Throws mmtune::DataError: the readers' errors,
/// use_caption without a captions file, an unknown split (the hint lists the available ones), a pid
/// of the split that problems.json lacks, a problem the prompt builder rejects, or (error mode) a
/// missing image naming the pid and the path.
ScienceQAData read_scienceqa(const ScienceQAOptions& options, const std::string& split);

}  // namespace mmtune::data
