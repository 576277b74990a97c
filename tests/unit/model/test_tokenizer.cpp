// SentencePiece tokenization equal to the Python sentencepiece package on >= 1000 lines (real
// ScienceQA text plus synthetic non-ASCII), on the real LLaMA tokenizer, llama2.c's 512-piece one
// (byte fallback) and the tiny trained one; streaming decode equal to whole-sequence decode.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/model/tokenizer.h>

#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "test_utils.h"

namespace mmtune::model {
namespace {

using nlohmann::json;

std::string shared(const std::string& rel) { return std::string(testing::kSharedDir) + "/" + rel; }

// Lines: every question, hint, choice and lecture/solution line of the 150 real ScienceQA problems,
// then synthetic lines mixing scripts, emoji, digits and whitespace runs (seeded).
std::vector<std::string> corpus_lines() {
  std::vector<std::string> lines{"", " ", "  two  spaces  ", "\ttab", "Hello world!"};
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
  const std::vector<std::string> bits{"水是液体", "温度", "Grüße", "naïve", "café", "Ωμέγα", "привет", "🙂", "🚀✨",
                                      "x²+y²", "12345", "3.14159", "  ", "\t", "(A)", "BECAUSE:", "Response:", "ÆØÅ",
                                      "日本語のテキスト", "한국어", "עברית", "العربية", "e\u0301", "\u00a0nbsp"};
  std::mt19937 rng(11);
  while (lines.size() < 1500) {
    std::string s;
    const int n = 1 + rng() % 8;
    for (int i = 0; i < n; ++i) s += bits[rng() % bits.size()] + std::string(rng() % 3 ? " " : "");
    lines.push_back(s);
  }
  return lines;
}

class TokenizerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerParity, EncodeAndDecodeEqualPythonSentencePiece) {
  const std::string model = GetParam() == "tiny" ? std::string(testing::kTinyDir) + "/spm/tiny.model" : shared(GetParam());
  testing::TempDir d;
  const auto lines = corpus_lines();
  ASSERT_GE(lines.size(), 1000u);
  std::string text;
  for (size_t i = 0; i < lines.size(); ++i) text += (i ? "\n" : "") + lines[i];
  const std::string in = d.write("lines.txt", text), out = d.path() + "/out.json";
  const auto r = testing::run_process({testing::kPython, std::string(testing::kSourceDir) + "/scripts/reference/tokenizer_oracle.py",
                                       model, in, out});
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
                         ::testing::Values("models/llama2-tokenizer/tokenizer.model", "models/stories260K/tok512.model", "tiny"),
                         [](const auto& info) { return info.index == 0 ? std::string("llama2_32k") : info.index == 1 ? std::string("tok512") : std::string("tiny"); });

TEST(Tokenizer, RealLlamaTokenizerKnownVector) {
  auto tok = load_tokenizer(shared("models/llama2-tokenizer/tokenizer.model"));
  EXPECT_EQ(tok->encode("Hello world!", true, false), (std::vector<int64_t>{1, 15043, 3186, 29991}));
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 0);  // no pad piece: LaVIN pads with <unk> = 0
  EXPECT_EQ(tok->encode("Hi", true, true).back(), 2);
  EXPECT_EQ(tok->decode({1, 15043, 3186, 29991, 2}), "Hello world!");  // control tokens skipped
}

TEST(Tokenizer, StreamingDecodeNeverSplitsACharacter) {
  auto tok = load_tokenizer(shared("models/stories260K/tok512.model"));  // byte fallback for CJK and emoji
  for (const std::string text : {"Once upon a time 水是液体 and 🙂!", "Grüße aus München", "plain ascii text"}) {
    const auto ids = tok->encode(text, true, false);
    StreamDecoder s(*tok);
    std::string streamed;
    for (int64_t id : ids) {
      const std::string piece = s.push(id);
      // every piece is valid UTF-8 on its own
      for (size_t i = 0; i < piece.size();) {
        const auto c = static_cast<unsigned char>(piece[i]);
        const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
        ASSERT_LE(i + n, piece.size()) << "split character in a streamed piece of: " << text;
        i += n;
      }
      EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << "replacement character streamed";
      streamed += piece;
    }
    streamed += s.flush();
    EXPECT_EQ(streamed, tok->decode(ids));
  }
}

TEST(Tokenizer, BadFilesAreCheckpointErrors) {
  testing::TempDir d;
  EXPECT_THROW(load_tokenizer(d.path() + "/missing.model"), CheckpointError);
  EXPECT_THROW(load_tokenizer(d.write("garbage.model", "definitely not a protobuf")), CheckpointError);
  try {
    load_tokenizer(d.write("tokenizer.json", "{}"));
    FAIL();
  } catch (const CheckpointError& e) {
    EXPECT_NE(e.hint().find("IAA"), std::string::npos);
  }
  EXPECT_THROW(load_tokenizer(d.path()), CheckpointError);  // a directory without tokenizer.model
}

}  // namespace
}  // namespace mmtune::model
