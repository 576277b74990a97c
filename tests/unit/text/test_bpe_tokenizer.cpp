// Llama-3's byte-level BPE tokenizer.json: hand examples on a 10-token vocabulary (merge order,
// ignore_merges, both merge spellings, special tokens inside text), then parity with transformers'
// PreTrainedTokenizerFast on the tiny Llama-3-style tokenizer (build/tiny/bpe, 2048 tokens + 256
// specials) over ~1900 lines (scripts/reference/bpe_tokenizer_oracle.py): the regex split, encode
// with and without BOS, decode, random id sequences with broken UTF-8, and the Llama-3 instruct
// chat template rendered by data::render.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_utils.h"
#include <mmtune/core/errors.h>
#include <mmtune/data/templates.h>
#include <mmtune/text/bpe_tokenizer.h>

namespace mmtune::text {
namespace test_bpe_tokenizer {

using nlohmann::json;

const char* kPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// A hand-made Llama-3-layout tokenizer.json: bytes a b c Ġ(space), merges "b c" < "a b" < "Ġ a",
// "abc" in the vocabulary but reachable only through ignore_merges; <|begin_of_text|> = 8 (the
// template's BOS), <|eot_id|> = 9.
json hand_tokenizer(bool ignore_merges, bool pair_merges) {
  auto added = [](int id, const char* content) {
    return json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
                {"rstrip", false}, {"normalized", false}, {"special", true}};
  };
  json merges = pair_merges ? json::parse(R"([["b","c"],["a","b"],["Ġ","a"]])")
                            : json::parse(R"(["b c","a b","Ġ a"])");
  return json{
      {"version", "1.0"},
      {"added_tokens", {added(8, "<|begin_of_text|>"), added(9, "<|eot_id|>")}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", kPattern}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor", json::parse(R"({"type":"TemplateProcessing",
         "single":[{"SpecialToken":{"id":"<|begin_of_text|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
         "pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],
         "special_tokens":{"<|begin_of_text|>":{"id":"<|begin_of_text|>","ids":[8],"tokens":["<|begin_of_text|>"]}}})")},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"byte_fallback", false},
        {"ignore_merges", ignore_merges},
        {"vocab",
         {{"a", 0}, {"b", 1}, {"c", 2}, {"Ġ", 3}, {"bc", 4}, {"ab", 5}, {"abc", 6}, {"Ġa", 7}}},
        {"merges", merges}}}};
}

using Ids = std::vector<int64_t>;

TEST(BpeTokenizer, PreTokenizerSplitsLikeTheLlama3Regex) {
  // Expected pieces from the `tokenizers` Split pre-tokenizer (Oniguruma).
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases{
      {"Hello world!", {"Hello", " world", "!"}},
      {"  \n\n  x", {"  \n\n", " ", " x"}},  // \s*[\r\n]+, then \s+(?!\S)
      {" \r\n \t\nx", {" \r\n \t\n", "x"}},
      {"x   ", {"x", "   "}},                          // trailing run: \s+(?!\S) to the end
      {"   x", {"  ", " x"}},                          // one space is left for the word
      {"12345", {"123", "45"}},                        // \p{N}{1,3}
      {"Ⅻ½²３", {"Ⅻ½²", "３"}},                        // Nl, No, No | Nd
      {"it's IT'S", {"it", "'s", " IT", "'S"}},        // case-insensitive contractions
      {"x'ſt", {"x", "'ſ", "t"}},                      // long s folds to s
      {"''s", {"''", "s"}},                            // punctuation run first
      {"a\u0301b", {"a", "\u0301b"}},                  // a combining mark is not a letter
      {"x\u3000\u3000y", {"x", "\u3000", "\u3000y"}},  // ideographic space is \s
      {"x\x1c\x1cy", {"x", "\x1c\x1c", "y"}},          // U+001C is not \s in Oniguruma
      {"a\U00031350b", {"a\U00031350b"}},              // CJK Ext. H (Unicode 15) is a letter
      {"x ...\n\ny", {"x", " ...\n\n", "y"}},          //  ?[^\s\p{L}\p{N}]+[\r\n]*
      {"", {}}};
  for (const auto& [text, want] : cases) {
    std::vector<std::string> got;
    for (auto p : llama3_pre_tokenize(text)) got.emplace_back(p);
    EXPECT_EQ(got, want) << text;
  }
  // Ill-formed UTF-8 passes through byte for byte.
  const std::string bad = "a\xff\xfe b\xe4\xb8";
  std::string joined;
  for (auto p : llama3_pre_tokenize(bad)) joined += p;
  EXPECT_EQ(joined, bad);
}

TEST(BpeTokenizer, HandVocabularyMergesByRankAndIgnoreMerges) {
  testing::TempDir d;
  for (bool pairs : {false, true}) {  // "a b" strings (tokenizers < 0.20) and ["a", "b"] pairs
    BpeTokenizer tok(d.write(pairs ? "p/tokenizer.json" : "s/tokenizer.json",
                             hand_tokenizer(true, pairs).dump()));
    EXPECT_EQ(tok.encode("abc", false, false), Ids{6});  // a vocabulary word: no merging
    EXPECT_EQ(tok.encode("ab", false, false), Ids{5});
    EXPECT_EQ(tok.encode(" abc", false, false), (Ids{7, 4}));  // Ġ a b c -> Ġ a bc -> Ġa bc
    EXPECT_EQ(tok.encode("azb", false, false),
              Ids{5});  // no token for "z": dropped, as tokenizers does
    EXPECT_EQ(tok.encode("abc", true, false), (Ids{8, 6}));
    EXPECT_EQ(tok.decode({7, 4, 9, 0}), " abca");  // <|eot_id|> skipped
    EXPECT_EQ(tok.id_to_piece(7), "Ġa");
    EXPECT_EQ(tok.vocab_size(), 10);
    EXPECT_EQ(tok.bos_id(), 8);   // TemplateProcessing's leading special token
    EXPECT_EQ(tok.eos_id(), -1);  // no <|end_of_text|>, no tokenizer_config.json
    EXPECT_EQ(tok.pad_id(), 0);
  }
  BpeTokenizer merged(d.write("m/tokenizer.json", hand_tokenizer(false, false).dump()));
  EXPECT_EQ(merged.encode("abc", false, false), (Ids{0, 4}));  // "b c" has the lowest rank
  EXPECT_EQ(merged.encode("abcabc", false, false), (Ids{0, 4, 0, 4}));
}

TEST(BpeTokenizer, SpecialTokenStringsInTextAreSpecialTokens) {
  testing::TempDir d;
  BpeTokenizer tok(d.write("tokenizer.json", hand_tokenizer(true, false).dump()));
  EXPECT_EQ(tok.encode("a<|eot_id|>b", false, false), (Ids{0, 9, 1}));
  EXPECT_EQ(tok.encode("<|eot_id|><|begin_of_text|>", false, false), (Ids{9, 8}));
  EXPECT_EQ(tok.encode("<|eot_id|", false, false), Ids{});  // no such bytes in this vocabulary
  EXPECT_EQ(tok.decode({9, 8}), "");
  EXPECT_TRUE(tok.is_special(9));
  EXPECT_FALSE(tok.is_special(6));
  EXPECT_EQ(tok.piece_to_id("<|eot_id|>"), 9);
  EXPECT_EQ(tok.piece_to_id("nope"), -1);
}

TEST(BpeTokenizer, TokenizerConfigSetsBosEosPad) {
  testing::TempDir d;
  d.write("t/tokenizer.json", hand_tokenizer(true, false).dump());
  d.write("t/tokenizer_config.json",
          R"({"bos_token": {"content": "<|begin_of_text|>", "__type": "AddedToken"},
              "eos_token": "<|eot_id|>", "pad_token": "abc"})");
  auto tok = load_tokenizer(d.path() + "/t");  // a directory with tokenizer.json only: BPE
  ASSERT_NE(dynamic_cast<BpeTokenizer*>(tok.get()), nullptr);
  EXPECT_EQ(tok->bos_id(), 8);
  EXPECT_EQ(tok->eos_id(), 9);
  EXPECT_EQ(tok->pad_id(), 6);
  EXPECT_EQ(tok->encode("ab", true, true), (Ids{8, 5, 9}));
}

void expect_checkpoint_error(const std::string& path, const std::string& message_part) {
  try {
    BpeTokenizer tok(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(e.one_line().find(message_part), std::string::npos) << e.one_line();
  }
}

TEST(BpeTokenizer, UnsupportedOrBrokenFilesAreCheckpointErrors) {
  testing::TempDir d;
  expect_checkpoint_error(d.write("a.json", "{"), "not valid JSON");
  expect_checkpoint_error(d.write("b.json", "{}"), "\"model\"");
  json j = hand_tokenizer(true, false);
  j["model"]["merges"].push_back("a z");
  expect_checkpoint_error(d.write("c.json", j.dump()), "not in the vocabulary");
  j = hand_tokenizer(true, false);
  j["model"]["merges"].push_back("abc");
  expect_checkpoint_error(d.write("d.json", j.dump()), "two tokens");
  j = hand_tokenizer(true, false);
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  expect_checkpoint_error(d.write("e.json", j.dump()), "pre_tokenizer");  // GPT-2's, not Llama-3's
  j = hand_tokenizer(true, false);
  j["normalizer"] = {{"type", "NFC"}};
  expect_checkpoint_error(d.write("f.json", j.dump()), "normalizer");
  j = hand_tokenizer(true, false);
  j["model"]["byte_fallback"] = true;
  expect_checkpoint_error(d.write("g.json", j.dump()), "byte_fallback");
  // found by fuzz_tokenizer_json: a missing key or a field of the wrong type escaped as nlohmann's
  // exception (std::terminate in the fuzzer, "internal error" in the CLI)
  j = hand_tokenizer(true, false);
  j["added_tokens"] = json::array({{{"content", "<|x|>"}, {"special", true}}});  // no "id"
  expect_checkpoint_error(d.write("i.json", j.dump()), "unexpected structure");
  j = hand_tokenizer(true, false);
  j["added_tokens"] = json::array({{{"id", "seven"}, {"content", "<|x|>"}, {"special", true}}});
  expect_checkpoint_error(d.write("k.json", j.dump()), "id \"seven\" of an added token is not in");
  // ids are checked before they size anything, and the template's BOS must be a token (fuzz: an
  // encode prepended id 696 of a 604-token vocabulary)
  j = hand_tokenizer(true, false);
  j["added_tokens"] = json::array({{{"id", -3}, {"content", "<|x|>"}, {"special", true}}});
  expect_checkpoint_error(d.write("l.json", j.dump()), "is not in [0, 4194304)");
  j = hand_tokenizer(true, false);
  j["model"]["vocab"]["zz"] = 1000000000;
  expect_checkpoint_error(d.write("m.json", j.dump()), "id 1000000000 of token zz is not in [0, 4194304)");
  j = hand_tokenizer(true, false);
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single", json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                                 {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                         {"special_tokens", {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {696}}}}}}};
  expect_checkpoint_error(d.write("n.json", j.dump()), "post_processor's BOS id 696 is outside the vocabulary");
  d.write("h/tokenizer.json", hand_tokenizer(true, false).dump());
  d.write("h/tokenizer_config.json", R"({"eos_token": "<|end_of_text|>"})");
  expect_checkpoint_error(d.path() + "/h/tokenizer.json", "<|end_of_text|>");
}

// ---------------------------------------------------------------------------------------------
// Parity with transformers on the tiny Llama-3-style tokenizer.

std::string tiny_bpe_dir() {
  return std::string(testing::kTinyDir) + "/bpe";
}

// The oracle's answers, computed once per test run.
const json& oracle() {
  static const json result = [] {
    testing::TempDir d;
    const std::string out = d.path() + "/oracle.json";
    const auto r = testing::run_process(
        {testing::kPython,
         std::string(testing::kSourceDir) + "/scripts/reference/bpe_tokenizer_oracle.py",
         tiny_bpe_dir(), out, "--scienceqa",
         std::string(testing::kSharedDir) + "/data/scienceqa/problems_sample150.json"},
        {}, std::chrono::seconds(120));
    if (r.exit_code != 0) throw std::runtime_error("bpe_tokenizer_oracle.py failed: " + r.err);
    return json::parse(testing::read_text(out));
  }();
  return result;
}

// Encodes every oracle line with `tok`; returns the number of mismatching lines (details are
// reported for the first few).
int compare_lines(const BpeTokenizer& tok, const json& lines, bool check_pieces) {
  int mismatches = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& line = lines[i];
    const std::string text = line["text"].get<std::string>();
    const Ids ids = tok.encode(text, false, false);
    std::vector<std::string> pieces;
    if (check_pieces) {
      for (auto p : llama3_pre_tokenize(text)) pieces.emplace_back(p);
    }
    const bool ok = ids == line["ids"].get<Ids>() &&
                    tok.encode(text, true, false) == line["ids_bos"].get<Ids>() &&
                    tok.decode(ids) == line["decoded"].get<std::string>() &&
                    (!check_pieces || pieces == line["pieces"].get<std::vector<std::string>>());
    if (!ok && ++mismatches <= 5) {
      ADD_FAILURE() << "line " << i << ": " << json(text).dump() << "\n  pieces "
                    << json(pieces).dump() << "\n  want   " << line["pieces"].dump() << "\n  ids  "
                    << json(ids).dump() << "\n  want " << line["ids"].dump() << "\n  decoded "
                    << json(tok.decode(ids)).dump() << " want " << line["decoded"].dump();
    }
  }
  return mismatches;
}

// The oracle runs once per process and each TEST is its own ctest process, so the parity checks
// share two TESTs.
TEST(BpeTokenizerParity, EncodeAndDecodeEqualTransformersOnEveryLine) {
  const json& o = oracle();
  const json& lines = o["lines"];
  ASSERT_GE(lines.size(), 1000u);
  BpeTokenizer tok(tiny_bpe_dir() + "/tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), o["vocab_size"].get<int64_t>());
  EXPECT_EQ(tok.bos_id(), o["bos_id"].get<int64_t>());
  EXPECT_EQ(tok.eos_id(), o["eos_id"].get<int64_t>());  // <|eot_id|> from tokenizer_config.json
  size_t non_ascii = 0;
  for (const auto& line : lines) {
    const std::string t = line["text"].get<std::string>();
    non_ascii += std::any_of(t.begin(), t.end(), [](char c) { return c & 0x80; });
  }
  EXPECT_GE(non_ascii, 800u);
  EXPECT_EQ(compare_lines(tok, lines, true), 0) << "of " << lines.size() << " lines";

  // The same file with merges spelled "a b" (what tokenizers < 0.20 wrote, e.g. Llama-3.0's file).
  json j = json::parse(testing::read_text(tiny_bpe_dir() + "/tokenizer.json"));
  json merges = json::array();
  for (const auto& m : j["model"]["merges"])
    merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
  j["model"]["merges"] = merges;
  testing::TempDir d;
  d.write("tokenizer_config.json", testing::read_text(tiny_bpe_dir() + "/tokenizer_config.json"));
  BpeTokenizer legacy(d.write("tokenizer.json", j.dump()));
  EXPECT_EQ(compare_lines(legacy, lines, false), 0) << "with \"a b\" merges";
}

TEST(BpeTokenizerParity, RandomIdsAndLlama3ChatTemplateEqualTransformers) {
  // Decode of byte tokens that break UTF-8, special tokens (skipped) and ids past the vocabulary
  // (dropped).
  auto tok = load_tokenizer(tiny_bpe_dir());
  int n = 0;
  for (const auto& r : oracle()["random"]) {
    EXPECT_EQ(tok->decode(r["ids"].get<Ids>()), r["decoded"].get<std::string>()) << r["ids"].dump();
    if (++n, HasFailure()) return;
  }
  EXPECT_GE(n, 100);
  // data::render(llama3_instruct) + BOS + encode (+ EOS = <|eot_id|> after an answer), which is
  // what collate does, against transformers' apply_chat_template with Meta's template.
  for (const auto& chat : oracle()["chats"]) {
    std::vector<data::Turn> turns;
    for (const auto& m : chat["messages"]) {
      const std::string role = m["role"].get<std::string>();
      turns.push_back({role == "system" ? data::Role::kSystem
                       : role == "user" ? data::Role::kUser
                                        : data::Role::kAssistant,
                       m["content"].get<std::string>()});
    }
    const data::Rendered r = data::render(data::Template::kLlama3Instruct, turns);
    Ids ids = tok->encode(r.prompt + r.answer, true, false);
    if (!r.answer.empty()) ids.push_back(tok->eos_id());
    EXPECT_EQ(ids, chat["ids"].get<Ids>()) << chat["messages"].dump();
  }
}

TEST(BpeTokenizer, StreamingDecodeNeverSplitsACharacter) {
  // Multi-byte characters the tiny vocabulary spells as several byte tokens.
  BpeTokenizer tok(tiny_bpe_dir() + "/tokenizer.json");
  const std::vector<std::string> texts{
      "水是液体 and 🙂!",
      "中文：水是液体。温度很高。",
      "日本語のテキスト 🚀✨",
      "👩‍👩‍👧 🇩🇪 ❤️",
      "Grüße aus München",
      "ⓐ①② 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U00031350",
      "<|start_header_id|>user<|end_header_id|>\n\n한국어<|eot_id|>"};
  for (const std::string& text : texts) {
    const Ids ids = tok.encode(text, true, true);
    StreamDecoder s(tok);
    std::string streamed;
    for (int64_t id : ids) {
      const std::string piece = s.push(id);
      EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos) << text;
      streamed += piece;
    }
    streamed += s.flush();
    EXPECT_EQ(streamed, tok.decode(ids));
    std::string without_specials = text;
    for (const char* sp : {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}) {
      for (size_t at; (at = without_specials.find(sp)) != std::string::npos;)
        without_specials.erase(at, std::string(sp).size());
    }
    EXPECT_EQ(streamed, without_specials);
  }
}

}  // namespace test_bpe_tokenizer
}  // namespace mmtune::text
