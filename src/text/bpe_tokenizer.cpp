// Byte-level BPE from a Hugging Face tokenizer.json (Llama-3); see bpe_tokenizer.h for the steps.
// The reference is the Rust `tokenizers` library behind transformers: its AddedVocabulary split,
// Split pre-tokenizer (Oniguruma regex), BPE::merge_word with ignore_merges, ByteLevel decoder.
#include <algorithm>
#include <array>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <queue>

#include <mmtune/core/errors.h>
#include <mmtune/core/read_file.h>
#include <mmtune/core/strings.h>
#include <mmtune/text/bpe_tokenizer.h>

namespace mmtune::text {
namespace {

using nlohmann::json;

struct CodeRange {
  uint32_t lo, hi;
};
#include "unicode_classes.inc"

// ---------------------------------------------------------------------------------------------
// Code-point classes of the pre-tokenizer regex.

enum CharClass : uint8_t { kOther, kLetter, kNumber, kSpace, kNewline };  // kNewline: \r or \n

template <size_t N>
bool in_ranges(const CodeRange (&ranges)[N], uint32_t cp) {
  const CodeRange* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                         [](uint32_t c, const CodeRange& r) { return c < r.lo; });
  return it != std::begin(ranges) && cp <= (it - 1)->hi;
}

CharClass classify_slow(uint32_t cp) {
  if (cp == '\r' || cp == '\n') return kNewline;
  if (in_ranges(kLetterRanges, cp)) return kLetter;
  if (in_ranges(kNumberRanges, cp)) return kNumber;
  if (in_ranges(kSpaceRanges, cp)) return kSpace;
  return kOther;
}

CharClass classify(uint32_t cp) {
  static const auto bmp = [] {  // the Basic Multilingual Plane as a table (64 KiB)
    auto t = std::make_unique<std::array<uint8_t, 0x10000>>();
    for (uint32_t c = 0; c < 0x10000; ++c) (*t)[c] = classify_slow(c);
    return t;
  }();
  return cp < 0x10000 ? static_cast<CharClass>((*bmp)[cp]) : classify_slow(cp);
}

// One code point of `s` at byte `i`: its value and byte length. Ill-formed UTF-8 (the same checks
// as Rust's str validation) gives one byte with value 0xFFFD, which classifies as kOther.
std::pair<uint32_t, uint32_t> decode_utf8(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  const uint8_t c = b(0);
  const size_t left = s.size() - i;
  const auto cont = [&](size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c < 0x80) return {c, 1};
  if (c >= 0xC2 && c <= 0xDF && cont(1)) return {((c & 0x1Fu) << 6) | (b(1) & 0x3F), 2};
  if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
    const uint8_t c1 = b(1);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F)) return {0xFFFD, 1};
    return {((c & 0x0Fu) << 12) | ((c1 & 0x3Fu) << 6) | (b(2) & 0x3F), 3};
  }
  if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    const uint8_t c1 = b(1);
    if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) return {0xFFFD, 1};
    return {((c & 0x07u) << 18) | ((c1 & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) | (b(3) & 0x3F), 4};
  }
  return {0xFFFD, 1};
}

// The letter a contraction's character matches case-insensitively: ASCII case, and the long s
// U+017F, which Unicode case folding maps to "s" (make_unicode_classes.py checks there are no
// more).
char fold(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return static_cast<char>(cp - 'A' + 'a');
  if (cp < 0x80) return static_cast<char>(cp);
  return cp == 0x17F ? 's' : 0;
}

// Code points that `(?i:'s|'t|'re|'ve|'m|'ll|'d)` matches at `i`, 0 if none.
size_t contraction(const std::vector<uint32_t>& cps, size_t i) {
  if (cps[i] != '\'' || i + 1 >= cps.size()) return 0;
  const char a = fold(cps[i + 1]);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const char b = i + 2 < cps.size() ? fold(cps[i + 2]) : 0;
  return ((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l') ? 3 : 0;
}

// ---------------------------------------------------------------------------------------------
// Byte-level alphabet (GPT-2's bytes_to_unicode): printable bytes map to themselves, the other 68
// to U+0100.. in byte order.

struct ByteAlphabet {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<int16_t, 324> cp_to_byte{};  // -1: not a byte-level character
  ByteAlphabet() {
    cp_to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      byte_to_cp[b] = printable ? b : next++;
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet a;
  return a;
}

// What the ByteLevel decoder makes of one token: its characters mapped back to bytes when all of
// them are byte-level characters, else the token's own UTF-8 (e.g. "ab cd": a space is not one).
bool byte_level_to_bytes(std::string_view token, std::string& out) {
  const auto& a = byte_alphabet();
  out.clear();
  for (size_t i = 0; i < token.size();) {
    const auto [cp, len] = decode_utf8(token, i);
    if (cp >= a.cp_to_byte.size() || a.cp_to_byte[cp] < 0 || (cp == 0xFFFD && len == 1)) {
      out.assign(token);
      return false;
    }
    out += static_cast<char>(a.cp_to_byte[cp]);
    i += len;
  }
  return true;
}

// Rust's String::from_utf8_lossy: each maximal ill-formed subsequence becomes one U+FFFD.
std::string utf8_lossy(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const auto byte = [&](size_t k) { return k < s.size() ? static_cast<uint8_t>(s[k]) : 0; };
  const auto in = [](uint8_t c, uint8_t lo, uint8_t hi) { return c >= lo && c <= hi; };
  for (size_t i = 0; i < s.size();) {
    const uint8_t c = byte(i);
    size_t ok = 0;   // length of the well-formed sequence at i, 0 if ill-formed
    size_t bad = 1;  // bytes the U+FFFD replaces if ill-formed
    if (c < 0x80) {
      ok = 1;
    } else if (in(c, 0xC2, 0xDF)) {
      if (in(byte(i + 1), 0x80, 0xBF)) ok = 2;
    } else if (in(c, 0xE0, 0xEF)) {
      const uint8_t c1 = byte(i + 1);
      const bool second = c == 0xE0   ? in(c1, 0xA0, 0xBF)
                          : c == 0xED ? in(c1, 0x80, 0x9F)
                                      : in(c1, 0x80, 0xBF);
      if (second) {
        bad = 2;
        if (in(byte(i + 2), 0x80, 0xBF)) ok = 3;
      }
    } else if (in(c, 0xF0, 0xF4)) {
      const uint8_t c1 = byte(i + 1);
      const bool second = c == 0xF0   ? in(c1, 0x90, 0xBF)
                          : c == 0xF4 ? in(c1, 0x80, 0x8F)
                                      : in(c1, 0x80, 0xBF);
      if (second) {
        bad = 2;
        if (in(byte(i + 2), 0x80, 0xBF)) {
          bad = 3;
          if (in(byte(i + 3), 0x80, 0xBF)) ok = 4;
        }
      }
    }
    if (ok) {
      out.append(s, i, ok);
      i += ok;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json checks

[[noreturn]] void refuse(const std::string& path, const std::string& what) {
  throw CheckpointError(path, "unsupported tokenizer.json: " + what,
                        "mmtune reads Llama-3-style byte-level BPE tokenizer.json files "
                        "(see include/mmtune/text/bpe_tokenizer.h)");
}

const json& require(const std::string& path, const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key))
    throw CheckpointError(path, std::string("tokenizer.json has no \"") + key + "\"",
                          "is this a Hugging Face tokenizer.json (tokenizers library format)?");
  return j.at(key);
}

constexpr std::string_view kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

void check_pre_tokenizer(const std::string& path, const json& pre) {
  const auto is_split = [](const json& p) {
    return p.value("type", "") == "Split" && p.contains("pattern") &&
           p["pattern"].value("Regex", "") == kLlama3Pattern &&
           p.value("behavior", "") == "Isolated" && !p.value("invert", false);
  };
  const auto is_byte_level = [](const json& p) {
    return p.value("type", "") == "ByteLevel" && !p.value("use_regex", true) &&
           !p.value("add_prefix_space", true);
  };
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers") &&
      pre["pretokenizers"].size() == 2 && is_split(pre["pretokenizers"][0]) &&
      is_byte_level(pre["pretokenizers"][1]))
    return;
  refuse(path,
         "pre_tokenizer must be Sequence[Split(Llama-3 regex, Isolated), "
         "ByteLevel(add_prefix_space=false, use_regex=false)], got " +
             pre.dump().substr(0, 300));
}

// The largest vocabulary read (4M ids; real ones reach 256k): ids size the tables before anything else.
constexpr int64_t kMaxVocab = int64_t{1} << 22;

// The special tokens TemplateProcessing puts before $A (the BOS), or -1.
int64_t template_bos(const std::string& path, const json& post) {
  if (post.is_null()) return -1;
  const json* tp = &post;
  if (post.value("type", "") == "Sequence") {
    tp = nullptr;
    for (const auto& p : post.at("processors")) {
      if (p.value("type", "") == "TemplateProcessing")
        tp = &p;
      else if (p.value("type", "") != "ByteLevel")
        refuse(path, "post_processor " + p.dump());
    }
    if (!tp) return -1;
  }
  if (tp->value("type", "") == "ByteLevel") return -1;
  if (tp->value("type", "") != "TemplateProcessing")
    refuse(path, "post_processor " + tp->value("type", std::string("?")));
  const json& single = tp->at("single");
  if (single.empty() || !single[0].contains("SpecialToken")) return -1;
  const std::string name = single[0]["SpecialToken"].at("id").get<std::string>();
  const json& spec = tp->at("special_tokens").at(name).at("ids");
  if (spec.size() != 1) refuse(path, "template special token " + name + " with several ids");
  return spec[0].get<int64_t>();
}

// tokenizer_config.json's "bos_token" etc.: a string or {"content": ...}; "" if absent.
std::string config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return "";
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content")) return v["content"].get<std::string>();
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer: the regex's alternatives in order at each position; every position matches one
// of them (a letter, a number, whitespace, or anything else via ` ?[^\s\p{L}\p{N}]+`).

std::vector<std::string_view> llama3_pre_tokenize(std::string_view text) {
  std::vector<uint32_t> cps, at;  // code point, byte offset
  std::vector<uint8_t> cls;
  cps.reserve(text.size());
  at.reserve(text.size() + 1);
  cls.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto [cp, len] = decode_utf8(text, i);
    cps.push_back(cp);
    at.push_back(static_cast<uint32_t>(i));
    cls.push_back(len == 1 && cp == 0xFFFD ? kOther : classify(cp));
    i += len;
  }
  at.push_back(static_cast<uint32_t>(text.size()));
  const size_t n = cps.size();
  const auto is = [&](size_t k, CharClass c) { return k < n && cls[k] == c; };
  const auto space = [&](size_t k) { return k < n && (cls[k] == kSpace || cls[k] == kNewline); };
  const auto other = [&](size_t k) { return k < n && cls[k] == kOther; };

  std::vector<std::string_view> pieces;
  for (size_t i = 0; i < n;) {
    size_t j = i;  // end of the match
    const uint8_t c = cls[i];
    if (const size_t k = contraction(cps, i)) {  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
      j = i + k;
    } else if (c == kLetter || (c != kNewline && c != kNumber && is(i + 1, kLetter))) {
      // [^\r\n\p{L}\p{N}]?\p{L}+
      j = i + 1;
      while (is(j, kLetter)) ++j;
    } else if (c == kNumber) {  // \p{N}{1,3}
      j = i + 1;
      while (j < i + 3 && is(j, kNumber)) ++j;
    } else if (other(i) || (cps[i] == ' ' && other(i + 1))) {  //  ?[^\s\p{L}\p{N}]+[\r\n]*
      j = i + 1;
      while (other(j)) ++j;
      while (is(j, kNewline)) ++j;
    } else {  // whitespace
      size_t run = i;
      while (space(run)) ++run;
      size_t last_newline = run;
      for (size_t k = run; k-- > i;) {
        if (cls[k] == kNewline) {
          last_newline = k;
          break;
        }
      }
      if (last_newline < run)
        j = last_newline + 1;  // \s*[\r\n]+
      else if (run == n || run - 1 == i)
        j = run;  // \s+(?!\S) to the end, or \s+
      else
        j = run - 1;  // \s+(?!\S) gives one back for the next word
    }
    pieces.push_back(text.substr(at[i], at[j] - at[i]));
    i = j;
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------------

namespace {

// The parts of tokenizer.json this reader does not implement are refused by name, never ignored.
void check_supported(const std::string& path, const json& j, const json& model) {
  if (model.value("type", "") != "BPE") refuse(path, "model.type must be BPE");
  if (model.value("byte_fallback", false)) refuse(path, "model.byte_fallback=true");
  if (!model.value("dropout", json()).is_null()) refuse(path, "model.dropout");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!model.value(k, json()).is_null() && !model[k].get<std::string>().empty())
      refuse(path, std::string("model.") + k);
  }
  if (!j.value("normalizer", json()).is_null()) refuse(path, "a normalizer");
  check_pre_tokenizer(path, j.value("pre_tokenizer", json()));
  const json decoder = j.value("decoder", json());
  if (!decoder.is_object() || decoder.value("type", "") != "ByteLevel")
    refuse(path, "decoder must be ByteLevel");
}

// A token id from the file, checked before anything is sized by it: an id of 1e9 must not
// allocate 1e9 pieces.
int32_t checked_id(const std::string& path, const json& id, const std::string& what) {
  if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxVocab)
    throw CheckpointError(path, cat("id ", id.dump(), " of ", what, " is not in [0, ", kMaxVocab, ")"),
                          "tokenizer.json must be the Hugging Face tokenizers file of a Llama-3-style BPE model");
  return static_cast<int32_t>(id.get<int64_t>());
}

json read_tokenizer_json(const std::string& path) {
  const std::string text = read_checkpoint_file(path, "check model.tokenizer", kMaxTokenizerFileBytes,
                                                "a tokenizer.json");
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw CheckpointError(path, std::string("not valid JSON: ") + e.what(),
                          "tokenizer.json must be the Hugging Face tokenizers file");
  }
}

}  // namespace

// A function-try-block: a field of the wrong type or a missing key anywhere below (json's .at() /
// .get<>()) is a CheckpointError naming the file, never nlohmann's exception (found by
// fuzz_tokenizer_json: an added token without "id").
BpeTokenizer::BpeTokenizer(const std::string& path) try {
  const json j = read_tokenizer_json(path);
  const json& model = require(path, j, "model");
  check_supported(path, j, model);
  ignore_merges_ = model.value("ignore_merges", false);
  const json added = j.value("added_tokens", json::array());
  const auto model_ids = read_vocabulary(path, model, added);
  read_merges(path, model, model_ids);
  read_added_tokens(path, added);
  read_special_ids(path, j);
} catch (const json::exception& e) {
  throw CheckpointError(path, std::string("unexpected structure: ") + e.what(),
                        "tokenizer.json must be the Hugging Face tokenizers file of a Llama-3-style BPE model");
}

// Vocabulary and added tokens -> pieces_ by id (the tables sized by the largest id of either);
// returns the model vocabulary's piece -> id, which the merges refer to.
std::unordered_map<std::string, int32_t> BpeTokenizer::read_vocabulary(const std::string& path, const json& model,
                                                                       const json& added) {
  const json& vocab = require(path, model, "vocab");
  int64_t size = 0;
  for (const auto& [piece, id] : vocab.items()) size = std::max<int64_t>(size, checked_id(path, id, "token " + piece) + 1);
  for (const auto& t : added) size = std::max<int64_t>(size, checked_id(path, t.at("id"), "an added token") + 1);
  pieces_.resize(size);
  bytes_.resize(size);
  special_.assign(size, 0);
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  std::unordered_map<std::string, int32_t> model_ids;
  std::string raw;
  for (const auto& [piece, id_json] : vocab.items()) {
    const int32_t id = checked_id(path, id_json, "token " + piece);
    pieces_[id] = piece;
    model_ids[piece] = id;
    piece_ids_[piece] = id;
    if (byte_level_to_bytes(piece, raw)) {
      bytes_[id] = raw;
      word_ids_[raw] = id;
      if (raw.size() == 1) byte_ids_[static_cast<uint8_t>(raw[0])] = id;
    } else {
      bytes_[id] = piece;
    }
  }
  const json unk = model.value("unk_token", json());
  unk_id_ = unk.is_string() && model_ids.count(unk.get<std::string>()) ? model_ids[unk.get<std::string>()] : -1;
  return model_ids;
}

// Merges: "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs; rank = position.
void BpeTokenizer::read_merges(const std::string& path, const json& model,
                               const std::unordered_map<std::string, int32_t>& model_ids) {
  const json& merges = require(path, model, "merges");
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw CheckpointError(path, "merge " + std::to_string(rank) + " \"" + s +
                                        "\" is not two tokens separated by one space");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      throw CheckpointError(path, "merge " + std::to_string(rank) + " is " + m.dump());
    }
    const auto ia = model_ids.find(a), ib = model_ids.find(b), iab = model_ids.find(a + b);
    if (ia == model_ids.end() || ib == model_ids.end() || iab == model_ids.end())
      throw CheckpointError(path, "merge " + std::to_string(rank) + " (" + a + ", " + b +
                                      ") uses a token that is not in the vocabulary");
    const uint64_t key =
        (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    merges_.insert_or_assign(key, Merge{static_cast<int32_t>(rank), iab->second});
  }
}

// Added tokens: matched whole before the pre-tokenizer, longest first within a first byte.
void BpeTokenizer::read_added_tokens(const std::string& path, const json& added) {
  std::string raw;
  for (const auto& t : added) {
    const int32_t id = checked_id(path, t.at("id"), "an added token");
    const std::string content = t.at("content").get<std::string>();
    for (const char* k : {"single_word", "lstrip", "rstrip"}) {
      if (t.value(k, false)) refuse(path, std::string("added token ") + content + " with " + k);
    }
    pieces_[id] = content;
    piece_ids_[content] = id;
    if (!byte_level_to_bytes(content, raw)) raw = content;
    bytes_[id] = raw;
    special_[id] = t.value("special", false) ? 1 : 0;
    if (content.empty()) continue;
    auto& group = added_[t.value("normalized", false) ? 1 : 0][static_cast<uint8_t>(content[0])];
    group.push_back({content, id});
  }
  for (auto& group : added_) {
    for (auto& list : group) {
      std::stable_sort(list.begin(), list.end(), [](const AddedToken& x, const AddedToken& y) {
        return x.content.size() > y.content.size();
      });
    }
  }
}

// BOS / EOS / pad: tokenizer_config.json beside the file, else the template's BOS and
// <|end_of_text|>.
void BpeTokenizer::read_special_ids(const std::string& path, const json& j) {
  namespace fs = std::filesystem;
  bos_id_ = template_bos(path, j.value("post_processor", json()));
  if (bos_id_ < -1 || bos_id_ >= vocab_size())  // found by fuzz_tokenizer_json: encode prepended an id of no token
    throw CheckpointError(path, cat("post_processor's BOS id ", bos_id_, " is outside the vocabulary of ", vocab_size()),
                          "tokenizer.json must be the Hugging Face tokenizers file of a Llama-3-style BPE model");
  eos_id_ = piece_to_id("<|end_of_text|>");
  const fs::path cfg_path = fs::path(path).parent_path() / "tokenizer_config.json";
  if (!fs::exists(cfg_path)) return;
  json cfg;
  const std::string text = read_checkpoint_file(
      cfg_path, "tokenizer_config.json beside tokenizer.json names the special tokens", kMaxMetadataFileBytes);
  try {
    cfg = json::parse(text);
  } catch (const json::exception& e) {
    throw CheckpointError(cfg_path.string(), std::string("not valid JSON: ") + e.what());
  }
  const auto set = [&](const char* key, int64_t& out) {
    const std::string name = config_token(cfg, key);
    if (name.empty()) return;
    const int64_t id = piece_to_id(name);
    if (id < 0)
      throw CheckpointError(cfg_path.string(), std::string(key) + " \"" + name + "\" is not a token of " + path);
    out = id;
  };
  set("bos_token", bos_id_);
  set("eos_token", eos_id_);
  set("pad_token", pad_id_);
}

int64_t BpeTokenizer::piece_to_id(std::string_view piece) const {
  const auto it = piece_ids_.find(std::string(piece));
  return it == piece_ids_.end() ? -1 : it->second;
}

bool BpeTokenizer::is_special(int64_t id) const {
  return id >= 0 && id < vocab_size() && special_[id];
}

std::string BpeTokenizer::id_to_piece(int64_t id) const {
  return id >= 0 && id < vocab_size() ? pieces_[id] : std::string();
}

std::vector<int32_t> BpeTokenizer::bpe(std::string_view word) const {
  // BPE::merge_word: symbols linked in a list; a min-heap of candidate pairs by (rank, position).
  struct Symbol {
    int32_t id, prev, next;
    bool alive;
  };
  struct Candidate {
    int32_t rank, pos, id;
    bool operator<(const Candidate& o) const {  // std::priority_queue pops the largest
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Symbol> sym;
  sym.reserve(word.size());
  for (unsigned char b : word) {
    const int32_t id = byte_ids_[b] >= 0 ? byte_ids_[b] : unk_id_;
    if (id < 0) continue;  // no token for this byte and no unk: dropped, as `tokenizers` does
    const auto k = static_cast<int32_t>(sym.size());
    sym.push_back({id, k - 1, k + 1, true});
  }
  if (sym.empty()) return {};
  sym.back().next = -1;
  const auto merge_of = [&](int32_t a, int32_t b) -> const Merge* {
    const auto it = merges_.find((static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  std::priority_queue<Candidate> queue;
  for (int32_t k = 0; k + 1 < static_cast<int32_t>(sym.size()); ++k) {
    if (const Merge* m = merge_of(sym[k].id, sym[k + 1].id)) queue.push({m->rank, k, m->id});
  }
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    const Merge* m = merge_of(left.id, sym[left.next].id);
    if (!m || m->id != top.id) continue;  // stale: one side was merged since
    Symbol& right = sym[left.next];
    left.id = top.id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* p = merge_of(sym[left.prev].id, left.id))
        queue.push({p->rank, left.prev, p->id});
    }
    if (left.next >= 0) {
      if (const Merge* p = merge_of(left.id, sym[left.next].id))
        queue.push({p->rank, top.pos, p->id});
    }
  }
  std::vector<int32_t> ids;
  for (int32_t k = 0; k >= 0; k = sym[k].next) ids.push_back(sym[k].id);
  return ids;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int64_t>& out) const {
  std::string key(word);
  if (ignore_merges_) {
    const auto it = word_ids_.find(key);
    if (it != word_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = bpe(word);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= 100000) cache_.clear();
  cache_.emplace(std::move(key), std::move(ids));
}

void BpeTokenizer::encode_segment(std::string_view text, int group,
                                  std::vector<int64_t>& out) const {
  if (group == 2) {
    for (std::string_view word : llama3_pre_tokenize(text)) encode_word(word, out);
    return;
  }
  // Cut out this group's added tokens: leftmost match first, the longest one at that position
  // (aho-corasick's LeftmostLongest in `tokenizers`).
  const auto& by_first = added_[group];
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    for (const AddedToken& t : by_first[static_cast<uint8_t>(text[i])]) {
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (i > start) encode_segment(text.substr(start, i - start), group + 1, out);
      out.push_back(t.id);
      start = i + t.content.size();
      i = start - 1;
      break;
    }
  }
  if (start < text.size()) encode_segment(text.substr(start), group + 1, out);
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text, bool add_bos, bool add_eos) const {
  std::vector<int64_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_id_ >= 0) out.push_back(bos_id_);
  encode_segment(text, 0, out);
  if (add_eos && eos_id_ >= 0) out.push_back(eos_id_);
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  // Ids past the vocabulary are dropped (as `tokenizers` does); special tokens are skipped.
  std::string bytes;
  for (int64_t id : ids) {
    if (!skipped_by_decode(id)) bytes += bytes_[id];
  }
  return utf8_lossy(bytes);
}

}  // namespace mmtune::text
