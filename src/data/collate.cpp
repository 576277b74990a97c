// Tokenisation, layout, labels, truncation and padding of a batch (see collate.h, batch.h).
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/collate.h>

#include <algorithm>

namespace mmtune::data {
namespace {

std::string who(const Example& ex) {
  return "sample '" + ex.id + "'";
}

// The pieces of one sample's text: head (before the slots) and body = prompt-part (+ answer).
struct Pieces {
  std::string head;
  std::string prompt;
  bool slots = false;
};

Pieces split(const Example& ex, const SequenceLayout& layout) {
  const bool image = !ex.image_path.empty();
  const std::string& ph = layout.image_placeholder;
  const size_t at = image && !ph.empty() ? ex.prompt.find(ph) : std::string::npos;
  if (at == std::string::npos)
    return {image ? layout.image_prefix : layout.text_prefix, ex.prompt, image};
  if (ex.prompt.find(ph, at + ph.size()) != std::string::npos) {
    throw DataError(who(ex), "the prompt has more than one image placeholder '" + ph + "'",
                    "one image per sample is supported; remove the extra placeholders");
  }
  return {ex.prompt.substr(0, at), ex.prompt.substr(at + ph.size()), true};
}

// "path: message" -> "message" (to re-throw an image error with the sample's id in front)
std::string message_of(const DataError& e) {
  const std::string what = e.what(), prefix = e.path() + ": ";
  return what.rfind(prefix, 0) == 0 ? what.substr(prefix.size()) : what;
}

// Stacks equal-length rows into one [B, T] tensor of `dtype`.
template <class T>
torch::Tensor stack_rows(std::vector<T>& flat, int64_t B, int64_t T_len, torch::ScalarType from,
                         torch::ScalarType to) {
  torch::Tensor t = torch::from_blob(flat.data(), {B, T_len}, from).clone();  // [B, T]
  return from == to ? t : t.to(to);
}

}  // namespace

CollateOptions collate_options(const config::DataConfig& data, const config::VisionConfig& vision) {
  CollateOptions o;
  o.max_length = data.max_length;
  o.pad_to_max_length = data.padding == "fixed";
  o.image = image_options(vision);
  o.skip_bad_samples = data.on_bad_sample == "skip";
  return o;
}

EncodedSample encode_sample(const Example& ex, const text::Tokenizer& tok,
                            const SequenceLayout& layout, int64_t max_length) {
  const bool generation = ex.answer.empty();
  const Pieces p = split(ex, layout);
  EncodedSample s;
  if (tok.bos_id() >= 0) s.tokens.push_back(tok.bos_id());
  const std::vector<int64_t> head = tok.encode(p.head, false, false);
  s.tokens.insert(s.tokens.end(), head.begin(), head.end());
  const auto slots_begin = static_cast<int64_t>(s.tokens.size());
  if (p.slots)
    s.tokens.insert(s.tokens.end(), static_cast<size_t>(layout.image_tokens), tok.pad_id());
  const auto body_begin = static_cast<int64_t>(s.tokens.size());
  const std::vector<int64_t> prompt = tok.encode(p.prompt, false, false);
  const std::vector<int64_t> body =
      generation ? prompt : tok.encode(p.prompt + ex.answer, false, false);
  s.tokens.insert(s.tokens.end(), body.begin(), body.end());
  if (!generation && tok.eos_id() >= 0) s.tokens.push_back(tok.eos_id());

  const auto n = static_cast<int64_t>(s.tokens.size());
  const int64_t supervised_from = body_begin + std::min(prompt.size(), body.size());
  s.labels.assign(n, kIgnoreIndex);
  for (int64_t i = generation ? n : supervised_from; i < n; ++i) s.labels[i] = s.tokens[i];
  s.slots.assign(n, 0);
  std::fill(s.slots.begin() + slots_begin, s.slots.begin() + body_begin, uint8_t{1});

  if (n > max_length) {
    if (generation) {
      throw DataError(
          who(ex), cat("the prompt is ", n, " tokens, more than data.max_length = ", max_length),
          "raise data.max_length or shorten the prompt (a generation prompt is never cut)");
    }
    if (body_begin > max_length) {
      throw DataError(
          who(ex),
          cat("data.max_length = ", max_length, " cuts into the image slots, which end at token ",
              body_begin),
          "raise data.max_length or move the image placeholder to the start of the prompt");
    }
    s.tokens.resize(max_length);
    s.labels.resize(max_length);
    s.slots.resize(max_length);
    s.truncated = true;
  }
  return s;
}

int64_t sequence_length(const Example& ex, const text::Tokenizer& tok,
                        const SequenceLayout& layout) {
  const Pieces p = split(ex, layout);
  int64_t n = (tok.bos_id() >= 0 ? 1 : 0) +
              static_cast<int64_t>(tok.encode(p.head, false, false).size()) +
              (p.slots ? layout.image_tokens : 0) +
              static_cast<int64_t>(tok.encode(p.prompt + ex.answer, false, false).size());
  if (!ex.answer.empty() && tok.eos_id() >= 0) ++n;
  return n;
}

Batch collate(const std::vector<Example>& examples, const text::Tokenizer& tok,
              const SequenceLayout& layout, const CollateOptions& o,
              std::vector<std::string>* skipped_ids) {
  const bool generation = !examples.empty() && examples.front().answer.empty();
  for (const Example& ex : examples) {
    if (ex.answer.empty() != generation) {
      throw DataError(who(ex),
                      cat(ex.answer.empty() ? "has no answer" : "has an answer", " while sample '",
                          examples.front().id, "' ", generation ? "has none" : "has one"),
                      "a batch is either for training (every sample has an answer) or for "
                      "generation (none has)");
    }
  }
  Batch b;
  std::vector<EncodedSample> rows;
  std::vector<torch::Tensor> pixels;  // per row: [3, S, S] or undefined (text-only)
  for (const Example& ex : examples) {
    torch::Tensor img;
    if (!ex.image_path.empty()) {
      try {
        img = load_image(ex.image_path, o.image);
      } catch (const DataError& e) {
        if (!o.skip_bad_samples)
          throw DataError(e.path(), who(ex) + ": " + message_of(e), e.hint());
        if (skipped_ids) skipped_ids->push_back(ex.id);
        continue;
      }
    }
    rows.push_back(encode_sample(ex, tok, layout, o.max_length));
    pixels.push_back(img);
    b.ids.push_back(ex.id);
  }

  const auto B = static_cast<int64_t>(rows.size());
  int64_t T = o.pad_to_max_length ? o.max_length : 0;
  for (const EncodedSample& r : rows) T = std::max(T, static_cast<int64_t>(r.tokens.size()));
  std::vector<int64_t> tokens(B * T, tok.pad_id()), labels(B * T, kIgnoreIndex), has_image(B, 0);
  std::vector<uint8_t> mask(B * T, 0), slots(B * T, 0);
  for (int64_t i = 0; i < B; ++i) {
    const EncodedSample& r = rows[i];
    const auto len = static_cast<int64_t>(r.tokens.size());
    const int64_t at = i * T + (generation ? T - len : 0);  // left padding for generation
    std::copy(r.tokens.begin(), r.tokens.end(), tokens.begin() + at);
    std::copy(r.labels.begin(), r.labels.end(), labels.begin() + at);
    std::copy(r.slots.begin(), r.slots.end(), slots.begin() + at);
    std::fill_n(mask.begin() + at, len, uint8_t{1});
    for (int64_t t = 1; t < T; ++t) b.supervised_tokens += labels[i * T + t] != kIgnoreIndex;
    b.truncated += r.truncated;
    has_image[i] = pixels[i].defined();
  }
  b.tokens = stack_rows(tokens, B, T, torch::kLong, torch::kLong);              // [B, T]
  b.labels = stack_rows(labels, B, T, torch::kLong, torch::kLong);              // [B, T]
  b.attention_mask = stack_rows(mask, B, T, torch::kUInt8, torch::kBool);       // [B, T]
  b.image_slots = stack_rows(slots, B, T, torch::kUInt8, torch::kBool);         // [B, T]
  b.has_image = torch::from_blob(has_image.data(), {B}, torch::kLong).clone();  // [B]
  const int64_t S = o.image.size;
  b.images = torch::zeros({B, 3, S, S}, torch::kFloat32);  // [B, 3, S, S]
  for (int64_t i = 0; i < B; ++i) {
    if (pixels[i].defined()) b.images.select(0, i).copy_(pixels[i]);
  }
  return b;
}

}  // namespace mmtune::data
