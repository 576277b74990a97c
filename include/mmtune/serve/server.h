// `mmtune serve`: the OpenAI-compatible HTTP API (cpp-httplib) over one Engine.
//   GET  /health               {"status": "ok", "active", "queued"}
//   GET  /v1/models            every servable model id (IAA: each workflow, "text" the bare LLM)
//   POST /v1/chat/completions  messages (text, image_url parts) through the config's conversation
//                              template, as `mmtune chat` renders them; stream: SSE chunks
//   POST /v1/completions       a raw prompt, continued as `mmtune generate` does (BOS first)
// Errors are OpenAI error objects: 400 bad request, 401 missing / wrong Bearer key (--api-key),
// 404 unknown model or path, 413 body over the limit, 503 queue full or shutting down.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/data/batch.h>
#include <mmtune/model/multimodal.h>
#include <mmtune/text/tokenizer.h>

namespace mmtune::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0 = any free port (the log line names it)
  int64_t max_batch = 16;
  int64_t max_queue = 64;
  std::string api_key;     // empty = no authentication
  std::string image_root;  // image_url paths are read only under this folder; empty = data URLs only
  int64_t max_body_bytes = 32ll << 20;
  double shutdown_grace_s = 30;  // SIGTERM / SIGINT: running answers may finish for this long
};

/// What the server runs: the built model and how its prompts are made.
struct ServedModel {
  model::MultimodalLM model{nullptr};
  std::unique_ptr<text::Tokenizer> tokenizer;
  config::RunConfig cfg;                // template, data layout, vision preprocessing, generation defaults
  std::vector<std::string> ids;         // model ids; IAA: the workflow names
  bool workflows = false;               // ids are IAA workflows (select one per request)
  data::SequenceLayout layout;
};

/// Serves until SIGTERM / SIGINT, then stops accepting, lets running answers finish (or ends
/// them with a final chunk after the grace period) and returns 0. Throws UsageError when the
/// address cannot be bound.
int run_server(ServedModel served, const ServerOptions& options);

}  // namespace mmtune::serve
