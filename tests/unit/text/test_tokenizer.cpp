// SentencePiece tokenization equal to the Python sentencepiece package on >= 1000 lines (real
// ScienceQA text plus synthetic non-ASCII), on the real LLaMA tokenizer, llama2.c's 512-piece one
// (byte fallback) and the tiny trained one; streaming decode equal to whole-sequence decode.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/text/tokenizer.h>

#include <algorithm>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "test_utils.h"

namespace mmtune::text {
namespace test_tokenizer {

using nlohmann::json;

std::string shared(const std::string& rel) { return std::string(testing::kSharedDir) + "/" + rel; }

// Lines: every question, hint, choice and lecture/solution line of the 150 real ScienceQA problems
// (about 2000, nearly all ASCII), edge cases, then 600 seeded synthetic lines mixing scripts, emoji,
// combining marks, code and whitespace runs.
std::vector<std::string> corpus_lines() {
  std::vector<std::string> lines{
      "", " ", "  two  spaces  ", "\ttab", "Hello world!", "trailing   ", "   leading",
      "for (int i = 0; i < n; ++i) { x[i] = y[i] * 2; }", "    return {a: b, **kw}  # noqa",
      "<a href=\"x?y=1&amp;z=2\">link</a>", "SELECT * FROM t WHERE c = 'ü';",
      "Straße, Größe, Übermaß, schön", "中文：水是液体。", "emoji 👩‍👩‍👧 🇩🇪 ❤️"};
  std::ifstream f(shared("data/scienceqa/problems_sample150.json"));
  const json problems = json::parse(f);
  auto add = [&](const std::string& s) {  // one line per newline-separated piece
    for (size_t a = 0, b; a <= s.size(); a = b + 1) {
      b = s.find('\n', a);
      if (b == std::string::npos) b = s.size();
      lines.push_back(s.substr(a, b - a));
    }
  };
  for (const auto& [pid, p] : problems.items()) {
    add(p["question"].get<std::string>());
    if (p["hint"].is_string()) add(p["hint"].get<std::string>());
    for (const auto& c : p["choices"]) add(c.get<std::string>());
    for (const char* key : {"lecture", "solution"}) {
      if (p[key].is_string()) add(p[key].get<std::string>());
    }
  }
  const std::vector<std::string> bits{
      "水是液体", "温度", "Grüße", "naïve", "café", "Ωμέγα", "привет", "🙂", "🚀✨", "x²+y²",
      "12345", "3.14159", "  ", "\t", "(A)", "BECAUSE:", "Response:", "ÆØÅ", "日本語のテキスト",
      "한국어", "עברית", "العربية", "e\u0301", "\u00a0nbsp", "if (x) {", "return y;", "a_b->c[0]",
      "#include <map>", "    ", "Äpfel", "Öl"};
  std::mt19937 rng(11);
  for (int k = 0; k < 600; ++k) {
    std::string s;
    const int n = 1 + rng() % 8;
    for (int i = 0; i < n; ++i) s += bits[rng() % bits.size()] + std::string(rng() % 3 ? " " : "");
    lines.push_back(s);
  }
  return lines;
}

class TokenizerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParity, EncodeAndDecodeEqualPythonSentencePiece) {
  const std::string model = GetParam() == "tiny"
                                ? std::string(testing::kTinyDir) + "/spm/tiny.model"
                                : shared(GetParam());
  testing::TempDir d;
  const auto lines = corpus_lines();
  ASSERT_GE(lines.size(), 1000u);
  std::string text;
  for (size_t i = 0; i < lines.size(); ++i) text += (i ? "\n" : "") + lines[i];
  const std::string in = d.write("lines.txt", text), out = d.path() + "/out.json";
  const auto r = testing::run_process(
      {testing::kPython,
       std::string(testing::kSourceDir) + "/scripts/reference/tokenizer_oracle.py", model, in,
       out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json expected = json::parse(testing::read_text(out));
  ASSERT_EQ(expected.size(), lines.size());
  auto tok = load_tokenizer(model);
  int mismatches = 0;
  for (size_t i = 0; i < lines.size() && mismatches < 5; ++i) {
    const auto ids = tok->encode(lines[i], false, false);
    const auto want = expected[i]["ids"].get<std::vector<int64_t>>();
    if (ids != want) ++mismatches;
    EXPECT_EQ(ids, want) << "line " << i << ": " << lines[i];
    EXPECT_EQ(tok->decode(ids), expected[i]["text"].get<std::string>()) << "line " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, TokenizerParity,
                         ::testing::Values("models/llama2-tokenizer/tokenizer.model",
                                           "models/stories260K/tok512.model", "tiny"),
                         [](const auto& info) {
                           return info.index == 0   ? std::string("llama2_32k")
                                  : info.index == 1 ? std::string("tok512")
                                                    : std::string("tiny");
                         });

TEST(Tokenizer, RealLlamaTokenizerKnownVector) {
  auto tok = load_tokenizer(shared("models/llama2-tokenizer/tokenizer.model"));
  EXPECT_EQ(tok->encode("Hello world!", true, false),
            (std::vector<int64_t>{1, 15043, 3186, 29991}));
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 0);  // no pad piece: LaVIN pads with <unk> = 0
  EXPECT_EQ(tok->encode("Hi", true, true).back(), 2);
  EXPECT_EQ(tok->decode({1, 15043, 3186, 29991, 2}), "Hello world!");  // control tokens skipped
}

// True if `s` is well-formed UTF-8 (no truncated, overlong or surrogate sequences).
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size() || (n == 2 && c < 0xC2)) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += n;
  }
  return true;
}

// Streams `ids` one at a time; every piece must be valid UTF-8 without a held-back U+FFFD, and the
// pieces plus flush() must equal decode() of the whole sequence.
void expect_stream_equals_decode(const Tokenizer& tok, const std::vector<int64_t>& ids,
                                 const std::string& what) {
  StreamDecoder s(tok);
  std::string streamed;
  for (int64_t id : ids) {
    const std::string piece = s.push(id);
    EXPECT_TRUE(valid_utf8(piece)) << "broken UTF-8 streamed for: " << what;
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos)
        << "replacement character streamed for: " << what;
    streamed += piece;
  }
  streamed += s.flush();
  EXPECT_EQ(streamed, tok.decode(ids)) << what;
}

TEST(Tokenizer, StreamingDecodeNeverSplitsACharacter) {
  // tok512 has 512 pieces: CJK and emoji go through byte fallback (<0xNN> pieces).
  auto tok = load_tokenizer(shared("models/stories260K/tok512.model"));
  const std::vector<std::pair<std::string, bool>> cases{
      // text, expects byte pieces
      {"Once upon a time 水是液体 and 🙂!", true},
      {"中文：水是液体。温度很高。", true},
      {"日本語のテキスト 🚀✨", true},
      {"🙂", true},
      {"Grüße aus München", false},
      {"plain ascii text", false}};
  for (const auto& [text, byte_fallback] : cases) {
    const auto ids = tok->encode(text, true, false);
    int bytes = 0;
    for (int64_t id : ids) bytes += tok->id_to_piece(id).rfind("<0x", 0) == 0;
    if (byte_fallback) {
      EXPECT_GT(bytes, 2) << "no byte fallback in: " << text;
    }
    expect_stream_equals_decode(*tok, ids, text);
    EXPECT_EQ(tok->decode(ids), text);
  }
}

TEST(Tokenizer, StreamingDecodeEqualsDecodeOnTheWholeCorpus) {
  const auto lines = corpus_lines();
  for (const char* model :
       {"models/stories260K/tok512.model", "models/llama2-tokenizer/tokenizer.model"}) {
    auto tok = load_tokenizer(shared(model));
    for (size_t i = 0; i < lines.size(); ++i) {
      expect_stream_equals_decode(*tok, tok->encode(lines[i], i % 2 == 0, i % 3 == 0),
                                  std::string(model) + ": " + lines[i]);
      if (HasFailure()) return;
    }
  }
}

TEST(Tokenizer, RandomIdsIncludingBrokenByteSequencesStreamLosslessly) {
  // What a sampler can produce: byte pieces that never complete a character, stray continuation
  // bytes, control tokens, in any order. Nothing may be lost, duplicated or split.
  auto tok = load_tokenizer(shared("models/stories260K/tok512.model"));
  std::mt19937 rng(5);
  for (int n = 0; n < 200; ++n) {
    std::vector<int64_t> ids;
    const int len = 1 + rng() % 24;
    for (int i = 0; i < len; ++i)
      ids.push_back(rng() % 2 ? 3 + rng() % 256 : rng() % tok->vocab_size());  // 3..258: <0xNN>
    StreamDecoder s(*tok);
    std::string streamed;
    for (int64_t id : ids) {
      const std::string piece = s.push(id);
      EXPECT_TRUE(valid_utf8(piece));
      streamed += piece;
    }
    streamed += s.flush();
    EXPECT_EQ(streamed, tok->decode(ids)) << "sequence " << n;
    if (HasFailure()) return;
  }
}

// Forwards to a real tokenizer and counts the ids decode() is given.
class CountingTokenizer final : public Tokenizer {
 public:
  explicit CountingTokenizer(const Tokenizer& t) : t_(t) {}
  std::vector<int64_t> encode(std::string_view text, bool b, bool e) const override { return t_.encode(text, b, e); }
  std::string decode(const std::vector<int64_t>& ids) const override {
    decoded += static_cast<int64_t>(ids.size());
    return t_.decode(ids);
  }
  bool skipped_by_decode(int64_t id) const override { return t_.skipped_by_decode(id); }
  std::string id_to_piece(int64_t id) const override { return t_.id_to_piece(id); }
  int64_t vocab_size() const override { return t_.vocab_size(); }
  int64_t bos_id() const override { return t_.bos_id(); }
  int64_t eos_id() const override { return t_.eos_id(); }
  int64_t pad_id() const override { return t_.pad_id(); }
  mutable int64_t decoded = 0;

 private:
  const Tokenizer& t_;
};

// fuzz_sentencepiece timed out streaming 7000 tokens: each push decoded the whole sequence (n^2 / 2
// ids for n tokens). A push decodes a window of a few tokens, also through long runs of bytes that
// never complete a character (the window's worst case) and of control tokens; the text is still
// exactly decode() of the whole.
TEST(Tokenizer, StreamingDecodesAWindowNotTheWholeSequence) {
  auto real = load_tokenizer(shared("models/stories260K/tok512.model"));
  const CountingTokenizer tok(*real);
  std::mt19937 rng(7);
  const int64_t n = 3000;
  std::vector<std::vector<int64_t>> streams(4);
  for (int64_t i = 0; i < n; ++i) {
    streams[0].push_back(rng() % 2 ? 3 + rng() % 256 : rng() % tok.vocab_size());  // mixed
    streams[1].push_back(3 + 0x80 + rng() % 64);                                     // stray continuation bytes
    streams[2].push_back(i % 5 == 4 ? 3 + 0x41 : 3 + 0xE2);                         // lead bytes, each cut short
    streams[3].push_back(i % 50 == 0 ? 300 : tok.bos_id());                          // mostly control tokens
  }
  for (size_t k = 0; k < streams.size(); ++k) {
    StreamDecoder s(tok);
    tok.decoded = 0;
    std::string streamed;
    for (int64_t id : streams[k]) streamed += s.push(id);
    const int64_t pushed = tok.decoded;
    streamed += s.flush();
    const std::string whole = real->decode(streams[k]);
    const size_t differs = std::mismatch(streamed.begin(), streamed.end(), whole.begin(), whole.end()).first - streamed.begin();
    EXPECT_TRUE(streamed == whole) << "stream " << k << ": " << streamed.size() << " bytes streamed, " << whole.size()
                                   << " decoded, first difference at byte " << differs;
    EXPECT_LE(pushed, 40 * n) << "stream " << k << ": ids decoded over " << n << " pushes";
  }
}

// The error names the file and carries a hint.
void expect_checkpoint_error(const std::string& path, const std::string& hint_part) {
  try {
    load_tokenizer(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find(hint_part), std::string::npos) << e.one_line();
  }
}

TEST(Tokenizer, BadFilesAreCheckpointErrors) {
  testing::TempDir d;
  expect_checkpoint_error(d.path() + "/missing.model", "--tokenizer");
  expect_checkpoint_error(d.write("garbage.model", "definitely not a protobuf"), "SentencePiece");
  expect_checkpoint_error(d.write("empty.model", ""), "SentencePiece");
  expect_checkpoint_error(d.write("tokenizer.json", "{}"), "Hugging Face");  // BPE, no "model"
  d.write("json-dir/tokenizer.json", "{}");  // a Llama-3 model directory
  expect_checkpoint_error(d.path() + "/json-dir", "Hugging Face");
  d.write("no-tokenizer/config.json", "{}");
  expect_checkpoint_error(d.path() + "/no-tokenizer", "explicitly");
}

// A minimal ModelProto: <unk>, <s>, </s> (unknown, control, control), then `pieces` as normal ones.
std::string tiny_model_proto(const std::vector<std::string>& pieces) {
  auto piece = [](const std::string& text, char type) {
    std::string m = std::string("\x0a") + static_cast<char>(text.size()) + text;
    m += std::string("\x15\0\0\0\0\x18", 6);  // score 0.0, then the type's tag
    m += type;
    return std::string("\x0a") + static_cast<char>(m.size()) + m;
  };
  std::string proto = piece("<unk>", 2) + piece("<s>", 3) + piece("</s>", 3);
  for (const auto& p : pieces) proto += piece(p, 1);
  return proto;
}

// fuzz_sentencepiece: a piece with a NUL byte made SentencePiece's trie builder throw through a
// frame that cannot unwind (std::terminate); such files are refused before SentencePiece parses.
TEST(Tokenizer, PiecesSentencePieceCannotLoadAreCheckpointErrors) {
  testing::TempDir d;
  auto ok = load_tokenizer(d.write("ok.model", tiny_model_proto({"ab", "\xe2\x96\x81" "a"})));
  EXPECT_EQ(ok->vocab_size(), 5);
  EXPECT_EQ(ok->id_to_piece(3), "ab");
  auto expect_refused = [&](const std::string& name, const std::string& bytes, const std::string& why) {
    const std::string path = d.write(name, bytes);
    try {
      load_tokenizer(path);
      ADD_FAILURE() << "no error for " << name;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.one_line();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.one_line();
    }
  };
  expect_refused("nul.model", tiny_model_proto({"ab", std::string("a\0b", 3)}), "piece 4 contains a NUL byte");
  expect_refused("empty-piece.model", tiny_model_proto({""}), "piece 3 is empty");
  // loaded by SentencePiece 0.1.97, then every encode failed (SentencePiece 0.2 refuses it at load)
  expect_refused("twice.model", tiny_model_proto({"ab", "cd", "ab"}), "piece 5 ('ab') is defined twice");
  const std::string whole = tiny_model_proto({"ab"});
  expect_refused("cut.model", whole.substr(0, whole.size() - 1), "past the end");
}

TEST(Tokenizer, LoadsFromAModelDirectory) {
  testing::TempDir d;
  d.write("model/tokenizer.model", testing::read_text(shared("models/stories260K/tok512.model")));
  auto tok = load_tokenizer(d.path() + "/model");
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->pad_id(), 0);  // tok512 has no pad piece either
}

}  // namespace test_tokenizer
}  // namespace mmtune::text
