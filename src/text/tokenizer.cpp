// SentencePiece tokenizer (LLaMA / LLaMA-2 / Vicuna / llama2.c vocabularies), stream decoding, and
// load_tokenizer, which picks SentencePiece or byte-level BPE (bpe_tokenizer.cpp) by file.
// Encoding and decoding are SentencePiece's own (Debian's C++ library), so byte fallback, the dummy
// prefix space and unknown pieces behave exactly as in the Python package the parity test runs.
#include <mmtune/core/errors.h>
#include <mmtune/core/read_file.h>
#include <mmtune/text/bpe_tokenizer.h>
#include <mmtune/text/tokenizer.h>

#include <filesystem>
#include <set>
#include <string_view>

#include <sentencepiece_processor.h>

namespace mmtune::text {
namespace {

// One protobuf varint at data[pos], advancing pos; false when it runs off the end or past 10 bytes.
bool read_varint(std::string_view data, size_t& pos, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && pos < data.size(); shift += 7) {
    const auto byte = static_cast<unsigned char>(data[pos++]);
    value |= uint64_t{byte & 0x7Fu} << shift;
    if ((byte & 0x80u) == 0) return true;
  }
  return false;
}

// Walks one protobuf message's fields, calling on_bytes(field, bytes) for every length-delimited
// one. Returns an empty string, or what is malformed (groups, wire types 6/7, a field past the end).
template <typename F>
std::string walk_message(std::string_view data, F&& on_bytes) {
  size_t pos = 0;
  while (pos < data.size()) {
    uint64_t tag = 0, len = 0;
    if (!read_varint(data, pos, tag)) return "a field tag runs past the end";
    switch (tag & 7) {
      case 0:
        if (!read_varint(data, pos, len)) return "a varint runs past the end";
        break;
      case 1:
      case 5: {
        const size_t width = (tag & 7) == 1 ? 8 : 4;
        if (data.size() - pos < width) return "a fixed-width field runs past the end";
        pos += width;
        break;
      }
      case 2:
        if (!read_varint(data, pos, len) || len > data.size() - pos)
          return "a length-delimited field runs past the end";
        if (std::string err = on_bytes(tag >> 3, data.substr(pos, len)); !err.empty()) return err;
        pos += len;
        break;
      default:
        return "wire type " + std::to_string(tag & 7) + " (groups are not used by SentencePiece)";
    }
  }
  return {};
}

// What SentencePiece 0.1.97 cannot survive, found before it parses: a piece with a NUL byte makes
// its Darts trie builder throw through a frame that cannot unwind (std::terminate, found by
// fuzz_sentencepiece), and an empty piece cannot go into the trie either; a piece defined twice
// loads but then fails every encode (SentencePiece 0.2 refuses it at load, as this does).
// ModelProto field 1 is `repeated SentencePiece pieces`, whose field 1 is `string piece`.
std::string unloadable_piece(std::string_view model) {
  int64_t index = 0;
  std::set<std::string_view> seen;
  return walk_message(model, [&](uint64_t field, std::string_view piece_msg) -> std::string {
    if (field != 1) return {};
    const int64_t id = index++;
    std::string_view piece;  // the last one wins, as protobuf merges a repeated scalar field
    if (std::string err = walk_message(piece_msg, [&](uint64_t f, std::string_view bytes) -> std::string {
          if (f == 1) piece = bytes;
          return {};
        });
        !err.empty())
      return err;
    if (piece.empty()) return "piece " + std::to_string(id) + " is empty";
    if (piece.find('\0') != std::string_view::npos) return "piece " + std::to_string(id) + " contains a NUL byte";
    if (!seen.insert(piece).second)
      return "piece " + std::to_string(id) + " ('" + std::string(piece) + "') is defined twice";
    return {};
  });
}

std::string read_model_file(const std::string& path) {
  return read_checkpoint_file(path,
                              "tokenizer.model must be the model's SentencePiece file (LLaMA's is 0.5 MB); check "
                              "model.tokenizer",
                              kMaxTokenizerFileBytes, "a SentencePiece model");
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    const std::string model = read_model_file(path);
    if (const std::string bad = unloadable_piece(model); !bad.empty())
      throw CheckpointError(path, "not a usable SentencePiece model: " + bad,
                            "tokenizer.model must be the model's SentencePiece file (a protobuf, not the "
                            "llama2.c tokenizer.bin or a Hugging Face tokenizer.json)");
    const auto status = sp_.LoadFromSerializedProto(model);
    if (!status.ok()) {
      throw CheckpointError(
          path, "not a SentencePiece model: " + status.ToString(),
          "tokenizer.model must be the model's SentencePiece file (a protobuf, not the "
          "llama2.c tokenizer.bin or a Hugging Face tokenizer.json)");
    }
  }
  std::vector<int64_t> encode(std::string_view text, bool add_bos, bool add_eos) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(std::string(text), &ids);
    if (!status.ok())
      throw Error("tokenizer failed to encode: " + status.ToString(), "is the text valid UTF-8?");
    std::vector<int64_t> out;
    out.reserve(ids.size() + 2);
    if (add_bos && sp_.bos_id() >= 0) out.push_back(sp_.bos_id());
    out.insert(out.end(), ids.begin(), ids.end());
    if (add_eos && sp_.eos_id() >= 0) out.push_back(sp_.eos_id());
    return out;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    // Ids past the vocabulary are dropped rather than thrown on: models often pad their embedding
    // past the tokenizer (LLaVA's 32064 rows for 32000 pieces), and a sampler may pick such a row.
    std::vector<int> v;
    v.reserve(ids.size());
    for (int64_t id : ids) {
      if (!skipped_by_decode(id)) v.push_back(static_cast<int>(id));
    }
    std::string text;
    const auto status = sp_.Decode(v, &text);
    if (!status.ok())
      throw Error("tokenizer failed to decode: " + status.ToString(),
                  "ids must come from this tokenizer");
    return text;
  }
  bool skipped_by_decode(int64_t id) const override {
    return id < 0 || id >= sp_.GetPieceSize() || sp_.IsControl(static_cast<int>(id));
  }
  std::string id_to_piece(int64_t id) const override {
    if (id < 0 || id >= sp_.GetPieceSize()) return "";
    return sp_.IdToPiece(static_cast<int>(id));
  }
  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  int64_t bos_id() const override { return sp_.bos_id(); }
  int64_t eos_id() const override { return sp_.eos_id(); }
  int64_t pad_id() const override { return sp_.pad_id() >= 0 ? sp_.pad_id() : 0; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
};

// Bytes at the end of `s` that start an incomplete UTF-8 sequence (0 if it ends complete).
size_t incomplete_utf8_tail(const std::string& s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead byte
    const size_t need = (c & 0x80) == 0      ? 1
                        : (c & 0xE0) == 0xC0 ? 2
                        : (c & 0xF0) == 0xE0 ? 3
                        : (c & 0xF8) == 0xF0 ? 4
                                             : 1;
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

std::string StreamDecoder::decode_window(size_t end) const {
  return tok_.decode(std::vector<int64_t>(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(end)));
}

namespace {

// Bytes of `text` that are final: all but a split UTF-8 character at the end, or a trailing run of
// at most 3 U+FFFD (an unfinished byte-fallback sequence decodes to one per byte until its last
// byte arrives; 4 bytes at most). Never below `floor`.
size_t stable_end(const std::string& text, size_t floor) {
  static const std::string kReplacement = "\xEF\xBF\xBD";
  size_t end = text.size() - incomplete_utf8_tail(text);
  for (int i = 0; i < 3 && end >= floor + kReplacement.size() &&
                  text.compare(end - kReplacement.size(), kReplacement.size(), kReplacement) == 0;
       ++i)
    end -= kReplacement.size();
  return std::max(end, floor);
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

std::string StreamDecoder::push(int64_t id) {
  ids_.push_back(id);
  if (tok_.skipped_by_decode(id)) return {};
  window_.push_back(id);
  const size_t end = window_.size();
  const std::string text = decode_window(end);
  // (never seen with SentencePiece) the text returned last decodes differently now: hold, flush() has it
  if (!starts_with(text, prefix_text_)) return {};
  const size_t stable = stable_end(text, prefix_text_.size());
  std::string out;
  if (stable > prefix_text_.size() + returned_) {
    out = text.substr(prefix_text_.size() + returned_, stable - prefix_text_.size() - returned_);
    returned_ += out.size();
    emitted_ += out.size();
  }
  // Move the window on to the last token t whose text is returned whole and final (more text follows
  // it unchanged): window_[read_, t) becomes the chunk in front. t = end when nothing is held, else a
  // few tokens back; each push so decodes a handful of tokens.
  for (size_t t = end, tries = 0; t > read_ && tries < 8; --t, ++tries) {
    const std::string head = t == end ? text : decode_window(t);
    if (head.size() > stable || !starts_with(head, prefix_text_)) continue;
    if (t < end && (head.size() >= text.size() || !starts_with(text, head))) continue;
    returned_ -= head.size() - prefix_text_.size();  // what was returned past token t
    window_.erase(window_.begin(), window_.begin() + static_cast<std::ptrdiff_t>(read_));
    read_ = t - read_;
    prefix_text_ = decode_window(read_);
    break;
  }
  return out;
}

std::string StreamDecoder::flush() {
  // Once, the whole sequence: what it decodes to past the bytes returned so far.
  const std::string text = tok_.decode(ids_);
  std::string out = text.size() > emitted_ ? text.substr(emitted_) : std::string();
  emitted_ += out.size();
  // pushing on after a flush: the window restarts at the last token, all of it returned
  if (!window_.empty()) window_.erase(window_.begin(), window_.end() - 1);
  read_ = window_.size();
  prefix_text_ = decode_window(read_);
  returned_ = 0;
  return out;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::string file = path;
  if (fs::is_directory(path)) {
    // A directory with both (some Llama-2 / Mistral repos) is SentencePiece: tokenizer.model is the
    // original, tokenizer.json a conversion.
    if (fs::exists(fs::path(path) / "tokenizer.model"))
      file = (fs::path(path) / "tokenizer.model").string();
    else if (fs::exists(fs::path(path) / "tokenizer.json"))
      file = (fs::path(path) / "tokenizer.json").string();
    else
      throw CheckpointError(path, "no tokenizer.model or tokenizer.json in this directory",
                            "pass the tokenizer file explicitly");
  }
  if (!fs::exists(file))
    throw CheckpointError(file, "tokenizer file not found", "check model.tokenizer / --tokenizer");
  if (fs::path(file).extension() == ".json") return std::make_unique<BpeTokenizer>(file);
  return std::make_unique<SentencePieceTokenizer>(file);
}

}  // namespace mmtune::text
