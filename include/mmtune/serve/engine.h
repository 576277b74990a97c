// Continuous batching over one frozen multimodal model (`mmtune serve`).
//
// One engine thread runs every forward. A request is prefilled alone (B = 1, exactly as
// `mmtune generate` / `chat` prefill it), its first token sampled, and its KV cache rows then
// spliced into the running batch of its workflow (IAA: one batch per workflow on the shared base);
// each decode step feeds every active row one token, and finished or cancelled rows leave the
// batch between steps. The batch cache is a common timeline of columns: each row's prompt is
// right-aligned to the newest column (left padding, key_valid false before it) and the model's
// prefix positions (LaVIN's modality token) stay in the first columns, as in a left-padded batch,
// so RoPE positions (counted from key_valid) and the adapters' masks are those of the row alone.
// Rows are compacted (the columns no row uses dropped) whenever the batch changes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mmtune/runtime/generator.h>
#include <mmtune/model/multimodal.h>
#include <mmtune/text/tokenizer.h>

namespace mmtune::serve {

/// What the engine tells a request's handler, in order: text pieces, then one kDone or kError.
struct Event {
  enum class Kind { kText, kDone, kError };
  Kind kind = Kind::kText;
  std::string text;           // kText: new text (already cut before any stop string)
  std::string finish_reason;  // kDone: "eos" | "stop" | "length"
  int status = 0;             // kError: the HTTP status (400 for a bad request, 500 otherwise)
  int64_t prompt_tokens = 0, completion_tokens = 0;  // kDone
};

/// The channel between a request's HTTP handler and the engine.
class RequestStream {
 public:
  void push(Event e);
  /// Waits up to `timeout_ms` for the next event; false on timeout.
  bool pop(Event& e, int timeout_ms);
  /// The client went away: the engine drops the row at its next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::atomic<bool> cancelled_{false};
};

struct GenerationRequest {
  std::string workflow;          // IAA workflow to select ("" = the model as built)
  model::MultimodalInput input;  // one row, no padding
  std::vector<int64_t> primes;   // the prompt's text ids (the stream decoder continues them)
  runtime::SamplingOptions sampling;
};

struct EngineOptions {
  int64_t max_batch = 16;  // rows decoded together
  int64_t max_queue = 64;  // requests waiting for a row; more are refused
};

class Engine {
 public:
  Engine(model::MultimodalLM model, const text::Tokenizer& tok, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Queues a request; nullptr when the queue is full (503) or the engine is stopping.
  std::shared_ptr<RequestStream> submit(GenerationRequest request);
  /// Stops admitting (queued requests get a 503 error event), lets the running rows finish for
  /// up to `grace_s` seconds, then ends the rest (finish_reason "length"); joins the thread.
  void shutdown(double grace_s);

  int64_t active() const { return active_; }
  int64_t queued();

 private:
  struct Row;
  struct Group;
  void loop();
  void admit(struct Pending& p);
  void step(Group& g);

  model::MultimodalLM model_;
  const text::Tokenizer& tok_;
  EngineOptions options_;
  bool has_workflows_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<struct Pending>> pending_;
  std::vector<std::unique_ptr<Group>> groups_;
  std::atomic<int64_t> active_{0};
  bool stopping_ = false;
  double deadline_ = 0;  // steady-clock seconds after which running rows are ended
  std::thread thread_;
};

}  // namespace mmtune::serve
