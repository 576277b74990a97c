// Tokenizers behind one interface: SentencePiece `tokenizer.model` (LLaMA, LLaMA-2, Vicuna, the
// llama2.c models) and Llama-3's byte-level BPE `tokenizer.json` (bpe_tokenizer.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mmtune::text {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// Token ids of `text`, optionally with BOS in front / EOS at the end.
  virtual std::vector<int64_t> encode(std::string_view text, bool add_bos, bool add_eos) const = 0;
  /// Text of `ids`; BOS/EOS/pad and other control tokens are skipped; byte-fallback pieces
  /// (<0xNN>) are reassembled into UTF-8.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  /// True for the ids decode() drops (control / special tokens, ids past the vocabulary): they
  /// change nothing about the text around them.
  virtual bool skipped_by_decode(int64_t id) const = 0;
  /// The piece string of one id (for debugging and tests).
  virtual std::string id_to_piece(int64_t id) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;
  /// The pad id: the model's pad piece if it has one, else 0 (LLaMA's <unk>, as LaVIN pads).
  virtual int64_t pad_id() const = 0;
};

/// Incremental detokenizer for streaming: push one id at a time, get the new text that is final
/// (a multi-byte UTF-8 character split over byte-fallback tokens is held back until complete;
/// SentencePiece's leading-space handling matches decode() of the whole sequence). Each push decodes
/// a window of the last few tokens, never the whole sequence: streaming n tokens costs O(n).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  /// Returns the text that this token completes (possibly empty).
  std::string push(int64_t id);
  /// Whatever is still held back (call at the end).
  std::string flush();

 private:
  std::string decode_window(size_t end) const;  // decode(window_[0, end))

  const Tokenizer& tok_;
  std::vector<int64_t> ids_;  // everything pushed (flush decodes it once)
  // The window decoded on each push (ids decode() skips left out): window_[0, read_) is a chunk
  // already returned (decoded with what follows it, so a new token's leading space is never at a
  // decode's start, where SentencePiece drops it), its text prefix_text_; of window_[read_, end)'s
  // text the first returned_ bytes are out.
  std::vector<int64_t> window_;
  size_t read_ = 0;
  std::string prefix_text_;
  size_t returned_ = 0;
  size_t emitted_ = 0;  // bytes returned in all
};

/// Loads `path`: a SentencePiece .model file, a Hugging Face tokenizer.json (byte-level BPE,
/// Llama-3), or a directory holding tokenizer.model (preferred) or tokenizer.json.
/// Throws mmtune::CheckpointError naming the file, with a hint.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace mmtune::text
