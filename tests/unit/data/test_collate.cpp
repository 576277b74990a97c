// Collate: the token layout and label mask of batch.h checked position by position against
// separate tokenizer calls (llama2.c's 512-piece SentencePiece model), image slots and placeholder
// splitting, padding sides, dynamic vs fixed padding, truncation and its count, the errors, and
// bad images in error and skip mode.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/data/collate.h>

#include <fstream>

#include "test_utils.h"

namespace mmtune::data {
namespace test_collate {

using Ids = std::vector<int64_t>;

const text::Tokenizer& tok() {
  static const auto t =
      text::load_tokenizer(std::string(testing::kSharedDir) + "/models/stories260K/tok512.model");
  return *t;
}

Ids enc(const std::string& s) {
  return tok().encode(s, false, false);
}

Example make(const std::string& id, const std::string& prompt, const std::string& answer,
             const std::string& image = "") {
  Example ex;
  ex.id = id;
  ex.prompt = prompt;
  ex.answer = answer;
  ex.image_path = image;
  return ex;
}

Ids cat_ids(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

CollateOptions small_options() {
  CollateOptions o;
  o.max_length = 64;
  o.image.size = 8;  // small images keep the tests fast
  return o;
}

Ids row(const torch::Tensor& t, int64_t i) {
  const torch::Tensor r = t[i].to(torch::kLong).contiguous();
  return Ids(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

// A P6 image OpenCV decodes without Python.
std::string write_ppm(const testing::TempDir& d, const std::string& name, int w, int h) {
  std::string bytes = "P6\n" + std::to_string(w) + " " + std::to_string(h) + "\n255\n";
  for (int i = 0; i < w * h * 3; ++i) bytes.push_back(static_cast<char>((i * 29) % 256));
  return d.write(name, bytes);
}

// Checks labels == tokens from `from` on and kIgnoreIndex before it, over the first n positions.
void expect_labels(const Ids& tokens, const Ids& labels, size_t from, const std::string& what) {
  ASSERT_EQ(tokens.size(), labels.size()) << what;
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_EQ(labels[i], i < from ? kIgnoreIndex : tokens[i]) << what << " position " << i;
  }
}

TEST(Collate, TrainingTextSampleIsBosPrefixPromptAnswerEos) {
  const Example ex = make("t1", "Question: Is the sky blue?\nResponse:", " The answer is A.", "");
  const Batch b = collate({ex}, tok(), SequenceLayout{}, small_options());
  const Ids prefix = enc("Image: N/A"), prompt = enc(ex.prompt), body = enc(ex.prompt + ex.answer);
  ASSERT_TRUE(
      std::equal(prompt.begin(), prompt.end(), body.begin()));  // LaVIN's rule applies cleanly here
  const Ids want = cat_ids({{tok().bos_id()}, prefix, body, {tok().eos_id()}});
  EXPECT_EQ(row(b.tokens, 0), want);
  expect_labels(row(b.tokens, 0), row(b.labels, 0), 1 + prefix.size() + prompt.size(),
                "text sample");
  EXPECT_EQ(b.labels[0][-1].item<int64_t>(), tok().eos_id());  // EOS is supervised
  EXPECT_TRUE(b.attention_mask.all().item<bool>());
  EXPECT_FALSE(b.image_slots.any().item<bool>());
  EXPECT_EQ(b.has_image[0].item<int64_t>(), 0);
  EXPECT_EQ(b.images.sizes(), (torch::IntArrayRef{1, 3, 8, 8}));
  EXPECT_EQ(b.images.abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(b.supervised_tokens,
            static_cast<int64_t>(want.size() - 1 - prefix.size() - prompt.size()));
  EXPECT_EQ(b.truncated, 0);
  EXPECT_EQ(b.ids, std::vector<std::string>{"t1"});
  EXPECT_EQ(b.tokens.scalar_type(), torch::kLong);
  EXPECT_EQ(b.attention_mask.scalar_type(), torch::kBool);
}

TEST(Collate, ImageSampleGetsPrefixSlotsAndItsPixels) {
  testing::TempDir d;
  const std::string img = write_ppm(d, "a.ppm", 13, 9);
  const Example ex = make("i1", "What is shown?\nResponse:", " A cat.", img);
  SequenceLayout layout;
  layout.image_tokens = 3;
  const CollateOptions o = small_options();
  const Batch b = collate({ex}, tok(), layout, o);
  const Ids prefix = enc("Image: "), prompt = enc(ex.prompt), body = enc(ex.prompt + ex.answer);
  const int64_t pad = tok().pad_id();
  const Ids want = cat_ids({{tok().bos_id()}, prefix, {pad, pad, pad}, body, {tok().eos_id()}});
  EXPECT_EQ(row(b.tokens, 0), want);
  expect_labels(row(b.tokens, 0), row(b.labels, 0), 1 + prefix.size() + 3 + prompt.size(),
                "image sample");
  const Ids slots = row(b.image_slots, 0);
  for (size_t i = 0; i < slots.size(); ++i) {
    EXPECT_EQ(slots[i], i >= 1 + prefix.size() && i < 1 + prefix.size() + 3) << i;
  }
  EXPECT_EQ(b.has_image[0].item<int64_t>(), 1);
  EXPECT_TRUE(torch::equal(b.images[0], load_image(img, o.image)));
}

TEST(Collate, PlaceholderSplitsThePromptAndReplacesThePrefix) {
  testing::TempDir d;
  const std::string img = write_ppm(d, "a.ppm", 5, 5);
  SequenceLayout layout;
  layout.image_tokens = 2;
  const Example with = make("p1", "USER: <image>\nWhat? ASSISTANT:", " Blue.", img);
  const Example text =
      make("p2", "USER: <image>\nWhat? ASSISTANT:", " Red.", "");  // text-only: the tag stays text
  const Batch b = collate({with, text}, tok(), layout, small_options());
  const Ids before = enc("USER: "), after = enc("\nWhat? ASSISTANT:"),
            body = enc("\nWhat? ASSISTANT: Blue.");
  const int64_t pad = tok().pad_id();
  const Ids want = cat_ids({{tok().bos_id()}, before, {pad, pad}, body, {tok().eos_id()}});
  Ids got = row(b.tokens, 0);
  got.resize(want.size());
  EXPECT_EQ(got, want);
  Ids labels = row(b.labels, 0);
  labels.resize(want.size());
  expect_labels(want, labels, 1 + before.size() + 2 + after.size(), "placeholder");
  const Ids text_want = cat_ids(
      {{tok().bos_id()}, enc("Image: N/A"), enc(text.prompt + text.answer), {tok().eos_id()}});
  Ids text_got = row(b.tokens, 1);
  text_got.resize(text_want.size());
  EXPECT_EQ(text_got, text_want);
  EXPECT_EQ(b.image_slots[0].sum().item<int64_t>(), 2);
  EXPECT_EQ(b.image_slots[1].sum().item<int64_t>(), 0);
}

TEST(Collate, TrainingRowsAreRightPaddedToTheLongestOrToMaxLength) {
  const Example a = make("a", "Short?", " Yes.", "");
  const Example b =
      make("b", "A much longer question with many more words in it?", " No, it is not.", "");
  const int64_t la = static_cast<int64_t>(encode_sample(a, tok(), {}, 64).tokens.size());
  const int64_t lb = static_cast<int64_t>(encode_sample(b, tok(), {}, 64).tokens.size());
  ASSERT_LT(la, lb);
  CollateOptions o = small_options();
  const Batch dyn = collate({a, b}, tok(), {}, o);
  EXPECT_EQ(dyn.tokens.sizes(), (torch::IntArrayRef{2, lb}));
  EXPECT_EQ(row(dyn.attention_mask, 0), cat_ids({Ids(la, 1), Ids(lb - la, 0)}));
  EXPECT_EQ(row(dyn.tokens, 0),
            cat_ids({encode_sample(a, tok(), {}, 64).tokens, Ids(lb - la, tok().pad_id())}));
  EXPECT_EQ(row(dyn.labels, 0),
            cat_ids({encode_sample(a, tok(), {}, 64).labels, Ids(lb - la, kIgnoreIndex)}));
  o.pad_to_max_length = true;
  const Batch fixed = collate({a, b}, tok(), {}, o);
  EXPECT_EQ(fixed.tokens.sizes(), (torch::IntArrayRef{2, 64}));
  EXPECT_EQ(fixed.attention_mask.sum().item<int64_t>(), la + lb);
  EXPECT_TRUE(torch::equal(fixed.tokens.narrow(1, 0, lb), dyn.tokens));
  EXPECT_EQ(fixed.supervised_tokens, dyn.supervised_tokens);
  EXPECT_EQ(dyn.supervised_tokens,
            (dyn.labels.narrow(1, 1, lb - 1) != kIgnoreIndex).sum().item<int64_t>());
}

TEST(Collate, GenerationRowsAreLeftPaddedWithoutEosOrLabels) {
  const Example a = make("a", "Short?", "", "");
  const Example b = make("b", "A much longer question with many more words?", "", "");
  const Batch g = collate({a, b}, tok(), {}, small_options());
  const Ids wa = cat_ids({{tok().bos_id()}, enc("Image: N/A"), enc(a.prompt)});
  const Ids wb = cat_ids({{tok().bos_id()}, enc("Image: N/A"), enc(b.prompt)});
  const auto T = static_cast<int64_t>(wb.size());
  ASSERT_EQ(g.tokens.size(1), T);
  EXPECT_EQ(row(g.tokens, 0), cat_ids({Ids(T - wa.size(), tok().pad_id()), wa}));
  EXPECT_EQ(row(g.tokens, 1), wb);
  EXPECT_EQ(row(g.attention_mask, 0), cat_ids({Ids(T - wa.size(), 0), Ids(wa.size(), 1)}));
  EXPECT_FALSE((g.labels != kIgnoreIndex).any().item<bool>());
  EXPECT_EQ(g.supervised_tokens, 0);
  CollateOptions o = small_options();
  o.pad_to_max_length = true;
  const Batch f = collate({a, b}, tok(), {}, o);
  EXPECT_EQ(f.tokens.size(1), 64);
  EXPECT_EQ(row(f.tokens, 1), cat_ids({Ids(64 - T, tok().pad_id()), wb}));  // still left
}

TEST(Collate, LongTrainingRowsAreCutFromTheRightAndCounted) {
  const Example longer = make("long", "Q?", " " + std::string(200, 'x'), "");
  const Example fits = make("fits", "Q?", " y", "");
  CollateOptions o = small_options();
  o.max_length = sequence_length(fits, tok(), {});  // "fits" just fits
  const int64_t L = o.max_length;
  const Batch b = collate({longer, fits}, tok(), {}, o);
  EXPECT_EQ(b.truncated, 1);
  EXPECT_EQ(b.tokens.size(1), L);
  const EncodedSample full = encode_sample(longer, tok(), {}, 1000);
  ASSERT_GT(static_cast<int64_t>(full.tokens.size()), L);
  EXPECT_EQ(row(b.tokens, 0), Ids(full.tokens.begin(), full.tokens.begin() + L));
  EXPECT_EQ(row(b.labels, 0), Ids(full.labels.begin(), full.labels.begin() + L));
  EXPECT_EQ(row(b.tokens, 1), encode_sample(fits, tok(), {}, 1000).tokens);
  EXPECT_NE(row(b.tokens, 0).back(), tok().eos_id());  // the cut drops the EOS
  EXPECT_EQ(sequence_length(longer, tok(), {}), static_cast<int64_t>(full.tokens.size()));
}

TEST(Collate, ErrorsNameTheSample) {
  CollateOptions o = small_options();
  o.max_length = 8;
  auto expect_error = [&](const std::vector<Example>& exs, const std::string& words) {
    try {
      collate(exs, tok(), {}, o);
      FAIL() << words;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("sample '" + exs.back().id + "'"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_FALSE(e.hint().empty());
    }
  };
  expect_error({make("gen", "A prompt far longer than eight tokens for sure.", "")}, "max_length");
  testing::TempDir d;
  const std::string img = write_ppm(d, "a.ppm", 4, 4);
  expect_error({make("slots", "Q?", " A", img)}, "image slots");  // BOS + prefix + 6 slots > 8
  o.max_length = 64;
  expect_error({make("two", "<image> and <image>", " A", img)}, "more than one image placeholder");
  expect_error({make("x", "Q?", " A"), make("y", "Q?", "")}, "has no answer");
}

TEST(Collate, BadImageIsAnErrorOrASkip) {
  testing::TempDir d;
  const std::string good = write_ppm(d, "good.ppm", 4, 4);
  const std::string bad = d.write("bad.png", "not a png");
  const std::vector<Example> exs{make("ok", "Q?", " A", good), make("broken", "Q?", " A", bad),
                                 make("text", "Q?", " A")};
  CollateOptions o = small_options();
  try {
    collate(exs, tok(), {}, o);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), bad);
    EXPECT_NE(std::string(e.what()).find("sample 'broken'"), std::string::npos) << e.what();
  }
  o.skip_bad_samples = true;
  std::vector<std::string> skipped;
  const Batch b = collate(exs, tok(), {}, o, &skipped);
  EXPECT_EQ(b.ids, (std::vector<std::string>{"ok", "text"}));
  EXPECT_EQ(skipped, std::vector<std::string>{"broken"});
  EXPECT_TRUE(torch::equal(b.has_image, torch::tensor({int64_t{1}, int64_t{0}})));
  EXPECT_EQ(b.images.size(0), 2);
}

TEST(Collate, OptionsComeFromTheConfig) {
  config::DataConfig data;
  config::VisionConfig vision;
  data.max_length = 77;
  data.padding = "fixed";
  data.on_bad_sample = "skip";
  vision.image_size = 336;
  const CollateOptions o = collate_options(data, vision);
  EXPECT_EQ(o.max_length, 77);
  EXPECT_TRUE(o.pad_to_max_length);
  EXPECT_TRUE(o.skip_bad_samples);
  EXPECT_EQ(o.image.size, 336);
}

}  // namespace test_collate
}  // namespace mmtune::data
