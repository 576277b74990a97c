#include <mmtune/serve/openai_api.h>

#include <array>
#include <cmath>

#include <nlohmann/json.hpp>

namespace mmtune::serve {
namespace {

using json = nlohmann::json;

json parse_object(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw ApiError(400, "the request body is not valid JSON");
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

const json* field(const json& j, const char* name) {
  auto it = j.find(name);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string required_string(const json& j, const char* name) {
  const json* v = field(j, name);
  if (!v) throw ApiError(400, std::string("'") + name + "' is required", name);
  if (!v->is_string()) throw ApiError(400, std::string("'") + name + "' must be a string", name);
  return v->get<std::string>();
}

double number(const json& v, const char* name, double lo, double hi, bool lo_open) {
  if (!v.is_number()) throw ApiError(400, std::string("'") + name + "' must be a number", name);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x > hi || x < lo || (lo_open && x == lo)) {
    throw ApiError(400, std::string("'") + name + "' must be in " + (lo_open ? "(" : "[") + std::to_string(lo) + ", " +
                            std::to_string(hi) + "]",
                   name);
  }
  return x;
}

int64_t integer(const json& v, const char* name, int64_t lo) {
  if (!v.is_number_integer()) throw ApiError(400, std::string("'") + name + "' must be an integer", name);
  // nlohmann reads a non-negative literal as unsigned: check the range before converting
  const bool too_big = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX);
  if (too_big || v.get<int64_t>() < lo) {
    throw ApiError(400, std::string("'") + name + "' must be an integer >= " + std::to_string(lo), name);
  }
  return v.get<int64_t>();
}

RequestSampling sampling(const json& j) {
  RequestSampling s;
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    if (const json* v = field(j, name)) s.max_tokens = integer(*v, name, 1);
  }
  if (const json* v = field(j, "temperature")) s.temperature = number(*v, "temperature", 0, 2, false);
  if (const json* v = field(j, "top_p")) s.top_p = number(*v, "top_p", 0, 1, true);
  if (const json* v = field(j, "seed")) {
    if (!v->is_number_integer()) throw ApiError(400, "'seed' must be an integer", "seed");
    s.seed = v->is_number_unsigned() ? v->get<uint64_t>() : static_cast<uint64_t>(v->get<int64_t>());
  }
  if (const json* v = field(j, "n"); v && !(v->is_number_integer() && v->get<int64_t>() == 1)) {
    throw ApiError(400, "only n = 1 is supported", "n");
  }
  if (const json* v = field(j, "stop")) {
    if (v->is_string()) {
      s.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const auto& e : *v) {
        if (!e.is_string()) throw ApiError(400, "'stop' must be a string or an array of strings", "stop");
        s.stop.push_back(e.get<std::string>());
      }
    } else {
      throw ApiError(400, "'stop' must be a string or an array of strings", "stop");
    }
    if (s.stop.size() > 4) throw ApiError(400, "'stop' takes at most 4 sequences", "stop");
    for (const auto& x : s.stop) {
      if (x.empty()) throw ApiError(400, "'stop' sequences must not be empty", "stop");
    }
  }
  return s;
}

bool stream_flag(const json& j) {
  const json* v = field(j, "stream");
  if (!v) return false;
  if (!v->is_boolean()) throw ApiError(400, "'stream' must be a boolean", "stream");
  return v->get<bool>();
}

ChatMessage message(const json& m, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) throw ApiError(400, where + " must be an object", "messages");
  ChatMessage out;
  const json* role = field(m, "role");
  if (!role || !role->is_string()) throw ApiError(400, where + ".role must be a string", "messages");
  out.role = role->get<std::string>();
  if (out.role == "developer") out.role = "system";
  if (out.role != "system" && out.role != "user" && out.role != "assistant") {
    throw ApiError(400, where + ".role '" + out.role + "' is not system, user or assistant", "messages");
  }
  const json* content = field(m, "content");
  if (!content) throw ApiError(400, where + ".content is required", "messages");
  if (content->is_string()) {
    out.text = content->get<std::string>();
    return out;
  }
  if (!content->is_array()) throw ApiError(400, where + ".content must be a string or an array of parts", "messages");
  for (const auto& part : *content) {
    const json* type = part.is_object() ? field(part, "type") : nullptr;
    if (!type || !type->is_string()) throw ApiError(400, where + ".content parts need a string 'type'", "messages");
    const std::string t = type->get<std::string>();
    if (t == "text") {
      const json* text = field(part, "text");
      if (!text || !text->is_string()) throw ApiError(400, where + ": a text part needs a string 'text'", "messages");
      out.text += (out.text.empty() ? "" : "\n") + text->get<std::string>();
    } else if (t == "image_url") {
      const json* iu = field(part, "image_url");
      const json* url = iu && iu->is_object() ? field(*iu, "url") : (iu && iu->is_string() ? iu : nullptr);
      if (!url || !url->is_string()) throw ApiError(400, where + ": an image_url part needs image_url.url", "messages");
      if (out.role != "user") throw ApiError(400, where + ": only user messages may carry an image", "messages");
      if (!out.image.empty()) throw ApiError(400, where + ": one image per message", "messages");
      out.image = url->get<std::string>();
      if (out.image.empty()) throw ApiError(400, where + ": image_url.url is empty", "messages");
    } else {
      throw ApiError(400, where + ": content part type '" + t + "' is not supported (text, image_url)", "messages");
    }
  }
  return out;
}

int b64(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string ApiError::type() const {
  if (!type_.empty()) return type_;
  if (status_ == 401) return "authentication_error";
  return status_ >= 500 ? "server_error" : "invalid_request_error";
}

ChatRequest parse_chat_request(const std::string& body) {
  const json j = parse_object(body);
  ChatRequest r;
  r.model = required_string(j, "model");
  const json* msgs = field(j, "messages");
  if (!msgs) throw ApiError(400, "'messages' is required", "messages");
  if (!msgs->is_array() || msgs->empty()) throw ApiError(400, "'messages' must be a non-empty array", "messages");
  for (size_t i = 0; i < msgs->size(); ++i) r.messages.push_back(message((*msgs)[i], i));
  if (r.messages.back().role != "user") throw ApiError(400, "the last message must be the user's", "messages");
  r.sampling = sampling(j);
  r.stream = stream_flag(j);
  return r;
}

CompletionRequest parse_completion_request(const std::string& body) {
  const json j = parse_object(body);
  CompletionRequest r;
  r.model = required_string(j, "model");
  const json* p = field(j, "prompt");
  if (!p) throw ApiError(400, "'prompt' is required", "prompt");
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (!p->is_string()) throw ApiError(400, "'prompt' must be a string (or an array of one string)", "prompt");
  r.prompt = p->get<std::string>();
  r.sampling = sampling(j);
  if (!r.sampling.max_tokens) r.sampling.max_tokens = 16;  // OpenAI's default for completions
  r.stream = stream_flag(j);
  return r;
}

std::optional<std::string> decode_data_url(const std::string& url) {
  if (url.rfind("data:", 0) != 0) return std::nullopt;
  const size_t comma = url.find(',');
  const std::string head = url.substr(5, comma == std::string::npos ? std::string::npos : comma - 5);
  if (comma == std::string::npos || head.rfind("image/", 0) != 0 || head.size() < 7 ||
      head.compare(head.size() - 7, 7, ";base64") != 0) {
    throw ApiError(400, "an image data URL must be data:image/<type>;base64,<data>", "messages");
  }
  std::string out;
  out.reserve((url.size() - comma) / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = comma + 1; i < url.size(); ++i) {
    const unsigned char c = url[i];
    if (c == '=') break;
    if (c == '\n' || c == '\r' || c == ' ') continue;
    const int v = b64(c);
    if (v < 0) throw ApiError(400, "the image data URL is not valid base64", "messages");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  if (out.empty()) throw ApiError(400, "the image data URL holds no data", "messages");
  return out;
}

std::string finish_reason(const std::string& r) { return r == "length" ? "length" : "stop"; }

std::string error_json(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type()}, {"code", nullptr}};
  err["param"] = e.param().empty() ? json(nullptr) : json(e.param());
  return dump(json{{"error", err}});
}

std::string chat_response_json(const std::string& id, const std::string& model, int64_t created, const std::string& text,
                               const std::string& finish, const Usage& usage) {
  json choice = {{"index", 0},
                 {"message", {{"role", "assistant"}, {"content", text}}},
                 {"finish_reason", finish},
                 {"logprobs", nullptr}};
  return dump(json{{"id", id},
                   {"object", "chat.completion"},
                   {"created", created},
                   {"model", model},
                   {"choices", json::array({choice})},
                   {"usage", usage_json(usage)}});
}

std::string completion_response_json(const std::string& id, const std::string& model, int64_t created,
                                     const std::string& text, const std::string& finish, const Usage& usage) {
  json choice = {{"index", 0}, {"text", text}, {"finish_reason", finish}, {"logprobs", nullptr}};
  return dump(json{{"id", id},
                   {"object", "text_completion"},
                   {"created", created},
                   {"model", model},
                   {"choices", json::array({choice})},
                   {"usage", usage_json(usage)}});
}

std::string chat_chunk_json(const std::string& id, const std::string& model, int64_t created, const std::string& text,
                            bool first, const std::string& finish, const Usage* usage) {
  json delta = json::object();
  if (first) delta["role"] = "assistant";
  if (!text.empty() || first) delta["content"] = text;
  json choice = {{"index", 0}, {"delta", delta}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish.empty() ? json(nullptr) : json(finish);
  json j = {{"id", id},
            {"object", "chat.completion.chunk"},
            {"created", created},
            {"model", model},
            {"choices", json::array({choice})}};
  if (usage) j["usage"] = usage_json(*usage);
  return dump(j);
}

std::string completion_chunk_json(const std::string& id, const std::string& model, int64_t created,
                                  const std::string& text, const std::string& finish, const Usage* usage) {
  json choice = {{"index", 0}, {"text", text}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish.empty() ? json(nullptr) : json(finish);
  json j = {{"id", id},
            {"object", "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({choice})}};
  if (usage) j["usage"] = usage_json(*usage);
  return dump(j);
}

std::string models_json(const std::vector<std::string>& ids, int64_t created) {
  json data = json::array();
  for (const auto& id : ids) data.push_back({{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "mmtune"}});
  return dump(json{{"object", "list"}, {"data", data}});
}

}  // namespace mmtune::serve
