// The LLaVA conversation format (data.format: llava_json), used by IAA, MoLE and custom data:
//   [{"id": "5", "image": "5/image.png",
//     "conversations": [{"from": "human", "value": "<image>\nWhat is ...?"},
//                       {"from": "gpt", "value": "B"}, ...]}, ...]
// "image" is optional (text-only sample) and relative to the image folder; "id" may be a string
// or a number. Roles: "human"/"user", "gpt"/"assistant", and an optional leading "system" turn.
//
// One Example per sample: the conversation goes through the conversation template (templates.h);
// the final gpt reply is the answer and everything before it is the prompt, so multi-turn samples
// train on their last reply with the earlier turns as context (a conversation ending with a human
// turn gives an empty answer, i.e. a generation prompt).
// For a sample with an image, the image placeholder is moved to the start of the first user turn
// as "<image>\n" + the rest stripped (LLaVA's preprocess_multimodal), and added there if the text
// had none; collate then puts the visual tokens at the placeholder. Text-only samples are left as
// they are.
// Image files are checked for existence here (decoding happens in collate): a missing one is a
// DataError naming the sample id and the path, or, with skip_bad_samples, the sample is dropped and
// counted. A malformed file or entry is always an error (skipping would hide a format mismatch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/data/batch.h>
#include <mmtune/data/templates.h>

namespace mmtune::data {

struct LlavaJsonOptions {
  std::string json_path;                      // data.json
  std::string image_folder;                   // data.image_folder; empty = the JSON file's folder
  Template chat_template = Template::kPlain;  // data.template
  std::string image_placeholder = "<image>";  // SequenceLayout::image_placeholder
  bool skip_bad_samples = false;              // data.on_bad_sample: skip
  int64_t limit = 0;                          // read only the first N entries; 0 = all
};

/// The options from `data` (json, image_folder, template, on_bad_sample, limit) and the layout's
/// image placeholder.
LlavaJsonOptions llava_json_options(const config::DataConfig& data, const SequenceLayout& layout);

struct LlavaJsonData {
  std::vector<Example> examples;
  int64_t skipped = 0;                   // samples dropped for a missing image (skip mode)
  std::vector<std::string> skipped_ids;  // their ids, in file order
};

/// Reads the file. Throws mmtune::DataError naming the file (and the entry's index and id) when it
/// cannot be read or parsed, an entry is malformed, or (error mode) an image is missing.
LlavaJsonData read_llava_json(const LlavaJsonOptions& options);

}  // namespace mmtune::data
