// The contract between the data layer and the models / trainer / eval:
//   Example  one sample as text (prompt, answer, optional image path) from a dataset reader
//   SequenceLayout  where the visual tokens go in the token sequence (family-specific strings)
//   Batch    tokenised, padded tensors ready for MultimodalLM (model/multimodal.h)
// Layout of one sequence (LaVIN, spec §1.5 / §1.11; the modality token is added by the model,
// not here):
//   image sample:  BOS tok(image_prefix) [slot x image_tokens] tok(prompt + answer) EOS
//   text sample:   BOS tok(text_prefix)                          tok(prompt + answer) EOS
// When the prompt contains `image_placeholder` ("<image>", LLaVA style), the slots replace the
// placeholder instead and no prefix is added. Prefixes are encoded without BOS. prompt + answer is
// encoded as one string (as LaVIN does); the first len(tok(prompt)) positions of it are not
// supervised. Slot and padding positions hold pad_id in `tokens`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

namespace mmtune::data {

inline constexpr int64_t kIgnoreIndex = -100;

/// One sample as text.
struct Example {
  std::string id;          // ScienceQA pid, LLaVA id
  std::string prompt;      // model input, e.g. "Question: ...\nResponse:" (LaVIN) or a templated turn
  std::string answer;      // target text; empty for generation
  std::string image_path;  // empty = text-only sample
  // Evaluation fields (ScienceQA): the options and the index of the right one (-1 = none).
  std::vector<std::string> choices;
  int64_t answer_index = -1;
  std::map<std::string, std::string> meta;  // subject, grade, hint, ... for category tables
};

/// Where a family puts the visual tokens (from the adapter / vision config).
struct SequenceLayout {
  int64_t image_tokens = 6;                // visual tokens per image (LaVIN: 6; LLaVA: patches)
  std::string image_prefix = "Image: ";    // before the slots of an image sample
  std::string text_prefix = "Image: N/A";  // in their place for a text-only sample
  std::string image_placeholder = "<image>";  // LLaVA style: slots replace it inside the prompt
};

enum class PadSide { kRight /* training */, kLeft /* batched generation */ };

/// A padded batch. B samples, T positions.
struct Batch {
  std::vector<std::string> ids;  // Example::id per row
  torch::Tensor tokens;          // [B, T] int64; pad_id at padding and image-slot positions
  torch::Tensor labels;          // [B, T] int64; target of position t is labels[t + 1] (HF style,
                                 // the model shifts); kIgnoreIndex where not supervised
  torch::Tensor attention_mask;  // [B, T] bool, true = real token (slots are real)
  torch::Tensor image_slots;     // [B, T] bool, positions that take the visual tokens, in order
  torch::Tensor images;          // [B, 3, S, S] float32, normalised; zeros for text-only samples
  torch::Tensor has_image;       // [B] int64: 1 image sample, 0 text-only
  int64_t supervised_tokens = 0;  // count of labels != kIgnoreIndex (after the shift: positions 1..T-1)
  int64_t truncated = 0;          // samples cut at max_length in this batch

  int64_t size() const { return tokens.defined() ? tokens.size(0) : 0; }
};

}  // namespace mmtune::data
