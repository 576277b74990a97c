#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/collate.h>
#include <mmtune/runtime/conversation.h>
#include <mmtune/runtime/stop_strings.h>

#include <algorithm>

namespace mmtune::runtime {

std::vector<std::string> template_stops(data::Template t) {
  switch (t) {
    case data::Template::kVicunaV1:
      return {"</s>", "USER:"};
    case data::Template::kLlama3Instruct:
      return {"<|eot_id|>", "<|start_header_id|>"};
    case data::Template::kPlain:
      break;
  }
  return {};
}

// ---- ChatSession ----

ChatSession::ChatSession(const text::Tokenizer& tok, ChatOptions options)
    : tok_(tok), options_(std::move(options)) {
  if (options_.max_prompt_tokens < 1)
    throw UsageError(cat("no room for a chat prompt (", options_.max_prompt_tokens, " positions)"),
                     "lower max_new_tokens or raise data.max_length (within the model's context)");
}

bool ChatSession::set_image(std::string path) {
  const bool shown = has_image() && image_turn_ < history_.size();
  if (shown) history_.clear();
  image_ = std::move(path);
  image_turn_ = history_.size();
  return shown;
}

void ChatSession::clear() {
  history_.clear();
  image_.clear();
  image_turn_ = 0;
}

std::vector<data::Turn> ChatSession::turns(const std::string& message) const {
  std::vector<data::Turn> out;
  if (!options_.system.empty()) out.push_back({data::Role::kSystem, options_.system});
  // LLaVA layout or LLaVA data: the placeholder marks where the slots go; LaVIN's layout on its
  // ScienceQA prompts puts them after the prefix
  const std::string& ph = options_.layout.image_placeholder;
  const bool placeholder =
      has_image() && !ph.empty() && (options_.layout.image_prefix.empty() || options_.llava_data);
  auto user = [&](size_t i, const std::string& text) {
    const bool here = placeholder && i == image_turn_ && text.find(ph) == std::string::npos;
    out.push_back({data::Role::kUser, here ? ph + "\n" + text : text});
  };
  for (size_t i = 0; i < history_.size(); ++i) {
    user(i, history_[i].user);
    out.push_back({data::Role::kAssistant, history_[i].assistant});
  }
  user(history_.size(), message);
  return out;
}

data::Example ChatSession::example(const std::string& message, size_t first) const {
  // render as if the first `first` exchanges were gone (the image moving to the oldest kept turn)
  ChatSession view(*this);
  view.history_.erase(view.history_.begin(),
                      view.history_.begin() + static_cast<std::ptrdiff_t>(first));
  view.image_turn_ = image_turn_ >= first ? image_turn_ - first : 0;
  const data::Rendered r = data::render(options_.templ, view.turns(message));
  data::Example ex;
  ex.id = cat("chat-", turn_count_);
  ex.prompt = r.prompt;
  ex.image_path = image_;
  return ex;
}

ChatTurn ChatSession::prepare(const std::string& message) {
  int64_t n = 0;
  for (size_t first = 0; first <= history_.size(); ++first) {
    ChatTurn t;
    t.example = example(message, first);
    n = data::sequence_length(t.example, tok_, options_.layout);
    if (n > options_.max_prompt_tokens) continue;
    t.tokens = n;
    t.dropped = static_cast<int64_t>(first);
    history_.erase(history_.begin(), history_.begin() + static_cast<std::ptrdiff_t>(first));
    image_turn_ = image_turn_ >= first ? image_turn_ - first : 0;
    ++turn_count_;
    return t;
  }
  throw UsageError(
      cat("the message needs ", n, " positions", has_image() ? " with the picture" : "",
          ", more than the ", options_.max_prompt_tokens, " the context leaves for a prompt"),
      "shorten it, or lower --max-new-tokens, or raise data.max_length (up to the model's "
      "context)");
}

void ChatSession::commit(const std::string& message, const std::string& answer) {
  history_.push_back({message, trim(answer)});
}

// ---- StreamFilter ----

std::string StreamFilter::push(const std::string& piece) {
  if (raw_.empty()) {
    const size_t a = piece.find_first_not_of(kWhitespace);
    if (a == std::string::npos) return "";
    raw_ = piece.substr(a);
  } else {
    raw_ += piece;
  }
  // safe end: before the first stop string, before a tail that may begin one, before trailing space
  const size_t stop = find_stop(raw_, stops_);
  size_t end = stop != std::string::npos ? stop : stop_safe_end(raw_, stops_);
  while (end > shown_ && kWhitespace.find(raw_[end - 1]) != std::string_view::npos)
    --end;
  if (end <= shown_) return "";
  std::string out = raw_.substr(shown_, end - shown_);
  shown_ = end;
  return out;
}

std::string StreamFilter::text() const {
  return trim(std::string_view(raw_).substr(0, find_stop(raw_, stops_)));  // npos: all of it
}

std::string StreamFilter::finish() {
  const std::string all = text();
  if (all.size() <= shown_) return "";
  std::string out = all.substr(shown_);
  shown_ = all.size();
  return out;
}

}  // namespace mmtune::runtime
