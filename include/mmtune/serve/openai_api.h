// The OpenAI HTTP API's JSON, without a model or a socket: requests of /v1/chat/completions and
// /v1/completions parsed and checked into plain structs, and the response, stream-chunk, model-list
// and error objects built in OpenAI's shapes (https://platform.openai.com/docs/api-reference).
// Every malformed request becomes an ApiError (HTTP status, message, the offending parameter); no
// input can throw anything else.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mmtune::serve {

/// A request the API refuses: status 400 / 401 / 404 / 413 / 503, OpenAI's error type and param.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string type = "")
      : std::runtime_error(message), status_(status), param_(std::move(param)), type_(std::move(type)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  /// "invalid_request_error" (4xx), "authentication_error" (401), "server_error" (5xx) unless given.
  std::string type() const;

 private:
  int status_;
  std::string param_, type_;
};

/// Sampling settings a request may set; unset ones take the server's defaults.
struct RequestSampling {
  std::optional<int64_t> max_tokens;  // >= 1
  std::optional<double> temperature;  // [0, 2]
  std::optional<double> top_p;        // (0, 1]
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;      // at most 4, non-empty
};

struct ChatMessage {
  std::string role;   // system | user | assistant
  std::string text;   // the text parts joined with "\n"
  std::string image;  // the image_url.url of an image part (data: URL or a path); empty = none
};

struct ChatRequest {
  std::string model;
  std::vector<ChatMessage> messages;  // non-empty; the last one is the user's
  RequestSampling sampling;
  bool stream = false;
};

struct CompletionRequest {
  std::string model;
  std::string prompt;
  RequestSampling sampling;
  bool stream = false;
};

/// Parse and check a body; throws ApiError (400) naming the field.
ChatRequest parse_chat_request(const std::string& body);
CompletionRequest parse_completion_request(const std::string& body);

/// A "data:image/...;base64,..." URL -> its bytes; nullopt when `url` is not a data URL. Throws
/// ApiError (400) for a data URL that is not a base64 image.
std::optional<std::string> decode_data_url(const std::string& url);

struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

/// OpenAI's finish_reason for the generator's ("eos" | "stop" -> "stop", "length" -> "length").
std::string finish_reason(const std::string& generator_reason);

/// {"error": {"message", "type", "param", "code"}}
std::string error_json(const ApiError& e);
/// chat.completion / text_completion objects.
std::string chat_response_json(const std::string& id, const std::string& model, int64_t created, const std::string& text,
                               const std::string& finish, const Usage& usage);
std::string completion_response_json(const std::string& id, const std::string& model, int64_t created,
                                     const std::string& text, const std::string& finish, const Usage& usage);
/// One stream chunk (without the SSE framing). `finish` empty = null; `usage` only in the last one.
std::string chat_chunk_json(const std::string& id, const std::string& model, int64_t created, const std::string& text,
                            bool first, const std::string& finish, const Usage* usage);
std::string completion_chunk_json(const std::string& id, const std::string& model, int64_t created,
                                  const std::string& text, const std::string& finish, const Usage* usage);
/// {"object": "list", "data": [{"id", "object": "model", "created", "owned_by": "mmtune"}...]}
std::string models_json(const std::vector<std::string>& ids, int64_t created);

}  // namespace mmtune::serve
