// The conversation behind `mmtune chat` and the server's chat completions, without the terminal: the
// history rendered through a conversation template (data/templates.h) into one generation sample
// (data::Example, for data::collate), trimming to the context window, and the filter that turns
// the generator's streamed pieces into the text a user sees.
//
// One image per conversation (the sequence layouts of data/batch.h hold one image): `/image PATH`
// attaches it to the next user turn; a later `/image` starts a new conversation. With a LLaVA-style
// layout (no image prefix: IAA, MoLE, LoRA), or any layout when the model learnt from LLaVA
// conversations (ChatOptions::llava_data), the image placeholder is put in front of the text of
// the user turn it came with ("<image>\n" + text, as LLaVA trains); with LaVIN's layout on
// ScienceQA data the image prefix ("Image: ") goes at the head of the sequence instead (collate
// does that). A conversation without an image is a text-only sample (LaVIN's "Image: N/A" path;
// IAA's text workflow).
// The history is re-rendered and prefilled every turn (no KV cache kept across turns), so a turn
// dropped from the front or a switched IAA workflow needs no cache bookkeeping.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <mmtune/data/batch.h>
#include <mmtune/data/templates.h>
#include <mmtune/text/tokenizer.h>

namespace mmtune::runtime {

/// Stop strings a template's turns end with, added to the configured ones: vicuna_v1 "</s>",
/// "USER:"; llama3_instruct "<|eot_id|>", "<|start_header_id|>"; plain none.
std::vector<std::string> template_stops(data::Template t);

struct ChatOptions {
  data::Template templ = data::Template::kPlain;
  std::string system;             // empty: the template's default system line
  data::SequenceLayout layout;    // from runtime::sequence_layout
  // The model learnt from LLaVA conversations (data.format llava_json): the image placeholder
  // leads the image's turn even when the layout has an image prefix (MMA tuned on LLaVA data), as
  // the llava_json reader puts it; false: only layouts without an image prefix use the placeholder.
  bool llava_data = false;
  int64_t max_prompt_tokens = 0;  // positions the rendered prompt may take (context - answer room)
};

/// The generation sample of one turn.
struct ChatTurn {
  data::Example example;  // prompt = the rendered history + the new message; answer empty
  int64_t tokens = 0;     // its length in positions (data::sequence_length)
  int64_t dropped = 0;    // exchanges dropped from the front of the history to fit
};

class ChatSession {
 public:
  /// Throws UsageError when options.max_prompt_tokens < 1.
  ChatSession(const text::Tokenizer& tok, ChatOptions options);

  /// Attaches the image at `path` (the caller has checked that it decodes) to the next user turn.
  /// Returns true when the history already showed the model another image: the history is then
  /// cleared (one image per conversation). A pending, not yet used image is simply replaced.
  bool set_image(std::string path);
  /// Forgets the history and the image.
  void clear();
  const std::string& image() const { return image_; }
  bool has_image() const { return !image_.empty(); }
  /// Completed exchanges (user message + answer) in the history.
  int64_t exchanges() const { return static_cast<int64_t>(history_.size()); }

  /// The conversation so far plus `message` as the next user turn, as template turns (a system
  /// turn first when one is configured; the image placeholder in the image's turn, LLaVA layout).
  std::vector<data::Turn> turns(const std::string& message) const;
  /// The sample for `message`: drops the oldest exchanges, for good, until the rendered prompt
  /// fits max_prompt_tokens (the image stays, moving to the oldest kept turn). Throws UsageError
  /// when the message does not fit even alone; nothing is dropped then.
  ChatTurn prepare(const std::string& message);
  /// Records an exchange after its answer (a partial answer after Ctrl-C too). The answer is kept
  /// trimmed of surrounding whitespace.
  void commit(const std::string& message, const std::string& answer);

 private:
  data::Example example(const std::string& message, size_t first) const;

  struct Exchange {
    std::string user, assistant;
  };
  const text::Tokenizer& tok_;
  ChatOptions options_;
  std::vector<Exchange> history_;
  std::string image_;
  size_t image_turn_ =
      0;  // index in history_ of the user turn the image came with (size(): the next)
  int64_t turn_count_ = 0;  // for example ids
};

/// Streamed pieces -> the text to show: leading whitespace dropped, and text that could still be
/// the start of a stop string, or trailing whitespace, held back until the next piece decides.
/// The text shown is always a prefix of text(), the trimmed answer cut at the first stop string.
class StreamFilter {
 public:
  explicit StreamFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  /// Adds a streamed piece; returns the text that is now safe to show (possibly empty).
  std::string push(const std::string& piece);
  /// The answer so far: trimmed, cut at the first stop string.
  std::string text() const;
  /// Whatever of text() was not shown yet (call at the end of the answer, or after Ctrl-C).
  std::string finish();

 private:
  std::vector<std::string> stops_;
  std::string raw_;   // every piece, leading whitespace dropped
  size_t shown_ = 0;  // bytes of raw_ returned so far
};

}  // namespace mmtune::runtime
