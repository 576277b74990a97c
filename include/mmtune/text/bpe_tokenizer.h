// Llama-3's tokenizer: a Hugging Face tokenizer.json with byte-level BPE, behind the Tokenizer
// interface. Encodes and decodes exactly as transformers' PreTrainedTokenizerFast on the same file:
//   1. special (added) tokens are cut out of the text first, wherever they appear, so a rendered
//      chat template ("<|start_header_id|>user<|end_header_id|>\n\n...<|eot_id|>") encodes to the
//      special ids (transformers' default, split_special_tokens=False);
//   2. the rest is split by Llama-3's pre-tokenizer regex (llama3_pre_tokenize below), each piece's
//      bytes become one word;
//   3. a word that is a vocabulary entry is that token (`ignore_merges`, as Llama-3 sets it); any
//      other word is merged by BPE: the adjacent pair with the lowest merge rank first, leftmost
//      among equal ranks, until no pair is in the merge list.
// decode() concatenates the tokens' bytes, skipping special tokens, and replaces broken UTF-8 with
// U+FFFD the way Rust's String::from_utf8_lossy does (what the `tokenizers` decoder returns).
// Supported: model BPE without byte fallback, unk or subword prefixes; no normalizer; pre-tokenizer
// Sequence[Split(Llama-3 regex, Isolated), ByteLevel(use_regex=false)]; ByteLevel decoder;
// TemplateProcessing "<bos> $A" (alone or after ByteLevel in a Sequence). Anything else is refused
// at load time with a CheckpointError naming the key.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <mmtune/text/tokenizer.h>

#include <nlohmann/json_fwd.hpp>

namespace mmtune::text {

/// Llama-3's pre-tokenizer split: the pieces of `text` (views into it) that the regex
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
/// \s*[\r\n]+|\s+(?!\S)|\s+` matches one after the other, evaluated by hand over UTF-8 code points
/// with the Unicode classes of the Oniguruma build that `tokenizers` uses (unicode_classes.inc).
/// Bytes that are not valid UTF-8 count as one non-letter, non-number, non-space character each.
std::vector<std::string_view> llama3_pre_tokenize(std::string_view text);

class BpeTokenizer final : public Tokenizer {
 public:
  /// Reads `path` (a tokenizer.json) and, when present, tokenizer_config.json beside it for
  /// bos_token / eos_token / pad_token. Without it: BOS is the post-processor's leading special
  /// token, EOS <|end_of_text|>, pad 0. Throws mmtune::CheckpointError naming the file.
  explicit BpeTokenizer(const std::string& path);

  std::vector<int64_t> encode(std::string_view text, bool add_bos, bool add_eos) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  bool skipped_by_decode(int64_t id) const override { return id < 0 || id >= vocab_size() || special_[id]; }
  /// The token's string as tokenizer.json spells it (byte-level characters, e.g. "Ġworld").
  std::string id_to_piece(int64_t id) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  int64_t bos_id() const override { return bos_id_; }
  int64_t eos_id() const override { return eos_id_; }
  int64_t pad_id() const override { return pad_id_; }

  /// The id of a token given as tokenizer.json spells it ("<|eot_id|>", "Ġworld"); -1 if none.
  int64_t piece_to_id(std::string_view piece) const;
  /// True for the added tokens marked special (skipped by decode()).
  bool is_special(int64_t id) const;

 private:
  struct AddedToken {
    std::string content;
    int32_t id;
  };
  struct Merge {
    int32_t rank;
    int32_t id;  // the merged token
  };

  // Encodes text after the added tokens of groups < `group` were cut out (group 0: tokens with
  // normalized=false, 1: normalized=true; `tokenizers` cuts them out in these two passes).
  void encode_segment(std::string_view text, int group, std::vector<int64_t>& out) const;
  // Appends the ids of one pre-tokenized word (raw bytes).
  void encode_word(std::string_view word, std::vector<int64_t>& out) const;
  // BPE merges over the bytes of `word`.
  std::vector<int32_t> bpe(std::string_view word) const;

  // The constructor's steps, in order (each throws CheckpointError naming the file).
  std::unordered_map<std::string, int32_t> read_vocabulary(const std::string& path, const nlohmann::json& model,
                                                           const nlohmann::json& added);
  void read_merges(const std::string& path, const nlohmann::json& model,
                   const std::unordered_map<std::string, int32_t>& model_ids);
  void read_added_tokens(const std::string& path, const nlohmann::json& added);
  void read_special_ids(const std::string& path, const nlohmann::json& j);

  std::vector<std::string> pieces_;  // by id: the token string from tokenizer.json
  std::vector<std::string> bytes_;   // by id: what the ByteLevel decoder makes of it
  std::vector<uint8_t> special_;     // by id: 1 for special added tokens
  std::unordered_map<std::string, int32_t> piece_ids_;  // token string -> id (model and added)
  std::unordered_map<std::string, int32_t> word_ids_;   // model vocabulary by raw bytes
  std::unordered_map<uint64_t, Merge> merges_;          // (left id << 32 | right id) -> merge
  int32_t byte_ids_[256];                               // single-byte tokens; -1 if absent
  int32_t unk_id_ = -1;  // model.unk_token, for bytes without a token
  bool ignore_merges_ = false;
  std::vector<AddedToken> added_[2][256];  // by group and first byte, longest first
  int64_t bos_id_ = -1;
  int64_t eos_id_ = -1;
  int64_t pad_id_ = 0;

  // Words already merged; cleared when it grows past a bound. encode() may run on several threads.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace mmtune::text
