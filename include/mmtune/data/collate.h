// Examples -> a padded data::Batch: tokenisation, the sequence layout of batch.h, labels, padding,
// truncation, images.
//
// Per sample (batch.h has the picture):
//   training   (answer non-empty): BOS tok(head) [slots] tok(prompt + answer) EOS
//   generation (answer empty):     BOS tok(head) [slots] tok(prompt)
// head is the layout's image_prefix (image sample) or text_prefix (text-only sample), encoded
// without BOS; when an image sample's prompt contains the image placeholder, the prompt is split
// there instead: head = the text before it, the slots replace it, and the text after it plays the
// prompt's part. Slots hold pad_id in `tokens`.
// Labels are kIgnoreIndex on BOS, head, slots, padding and the first len(tok(prompt)) tokens of the
// prompt + answer encoding (LaVIN's rule); the answer tokens and EOS are their own ids.
// Training rows are right-padded and generation rows left-padded, to the batch's longest row
// (padding: dynamic) or to max_length (fixed). A training row longer than max_length is cut from
// the right and counted in Batch::truncated; a generation prompt longer than max_length is an
// error, as is a cut through the image slots.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/data/batch.h>
#include <mmtune/data/image.h>
#include <mmtune/text/tokenizer.h>

namespace mmtune::data {

struct CollateOptions {
  int64_t max_length = 512;        // data.max_length
  bool pad_to_max_length = false;  // data.padding: fixed (else dynamic)
  ImageOptions image;              // vision.image_size / preprocess / interpolation / norm
  bool skip_bad_samples =
      false;  // data.on_bad_sample: skip (a sample whose image fails is dropped)
};

/// From the `data` and `vision` sections.
CollateOptions collate_options(const config::DataConfig& data, const config::VisionConfig& vision);

/// One sample laid out, before padding. All three vectors have the same length.
struct EncodedSample {
  std::vector<int64_t> tokens;  // pad_id at the image slots
  std::vector<int64_t> labels;  // kIgnoreIndex where not supervised
  std::vector<uint8_t> slots;   // 1 at the image slots
  bool truncated = false;
};

/// Lays out one example (training when its answer is non-empty, generation otherwise); an example
/// with a non-empty image_path is an image sample. Throws mmtune::DataError naming the sample:
/// more than one image placeholder in the prompt, a generation prompt longer than max_length, or
/// max_length cutting into the image slots.
EncodedSample encode_sample(const Example& example, const text::Tokenizer& tok,
                            const SequenceLayout& layout, int64_t max_length);

/// The row length of `example` before truncation (for length-grouped sampling).
int64_t sequence_length(const Example& example, const text::Tokenizer& tok,
                        const SequenceLayout& layout);

/// Tokenises, pads and loads the images of `examples` (in order) into one Batch:
/// tokens / labels [B, T] int64, attention_mask / image_slots [B, T] bool, images [B, 3, S, S]
/// float32 (zeros for text-only rows), has_image [B] int64. All examples must be of one kind
/// (all with answers, or all without). With skip_bad_samples, a sample whose image cannot be
/// decoded is left out (B shrinks, possibly to 0) and its id appended to `skipped_ids` when given;
/// otherwise that is a DataError naming the sample and the path. Thread-safe.
Batch collate(const std::vector<Example>& examples, const text::Tokenizer& tok,
              const SequenceLayout& layout, const CollateOptions& options,
              std::vector<std::string>* skipped_ids = nullptr);

}  // namespace mmtune::data
