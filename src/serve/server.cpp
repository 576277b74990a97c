#include <mmtune/core/clock.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/core/signals.h>
#include <mmtune/core/strings.h>
#include <mmtune/data/collate.h>
#include <mmtune/runtime/conversation.h>
#include <mmtune/runtime/generator.h>
#include <mmtune/serve/engine.h>
#include <mmtune/serve/openai_api.h>
#include <mmtune/serve/server.h>
#include <mmtune/runtime/lm_loss.h>

#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

namespace mmtune::serve {
namespace {

namespace fs = std::filesystem;
constexpr const char* kJson = "application/json";

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(error_json(e), kJson);
}

// A request ready for the engine, plus what its response needs.
struct Prepared {
  GenerationRequest request;
  std::string workflow;
};

class Api {
 public:
  Api(ServedModel served, const ServerOptions& options)
      : served_(std::move(served)),
        options_(options),
        engine_(served_.model, *served_.tokenizer, EngineOptions{options.max_batch, options.max_queue}) {
    collate_ = data::collate_options(served_.cfg.data, served_.cfg.vision);
    collate_.pad_to_max_length = false;
    collate_.skip_bad_samples = false;
    templ_ = data::parse_template(served_.cfg.data.template_name);
    tmp_ = fs::temp_directory_path() / ("mmtune-serve-" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
    prefix_ = runtime::prefix_positions(*served_.model, served_.tokenizer->bos_id());
  }
  ~Api() {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }

  Engine& engine() { return engine_; }
  const ServedModel& served() const { return served_; }

  // model id -> workflow ("" when the model has no workflows); 404 for an unknown id
  std::string workflow_of(const std::string& id) const {
    if (std::find(served_.ids.begin(), served_.ids.end(), id) == served_.ids.end()) {
      throw ApiError(404, "The model '" + id + "' does not exist (served: " + join(served_.ids, ", ") + ")", "model",
                     "model_not_found");
    }
    return served_.workflows ? id : "";
  }

  runtime::SamplingOptions sampling(const RequestSampling& r) const {
    const auto& g = served_.cfg.chat.generation;
    runtime::SamplingOptions s;
    s.max_new_tokens = r.max_tokens.value_or(g.max_new_tokens);
    s.temperature = r.temperature.value_or(g.temperature);
    s.top_p = r.top_p.value_or(g.top_p);
    s.top_k = g.top_k;
    s.repetition_penalty = g.repetition_penalty;
    s.seed = r.seed.value_or(static_cast<uint64_t>(g.seed));
    s.stop = r.stop;
    const int64_t context = served_.model->llm().config().max_position_embeddings;
    if (s.max_new_tokens >= context) {
      throw ApiError(400, cat("max_tokens ", s.max_new_tokens, " exceeds the model's context of ", context, " positions"),
                     "max_tokens");
    }
    return s;
  }

  // An image_url -> a local file the collate step reads; `owned` set when it is a temp file.
  std::string image_file(const std::string& url, bool& owned) {
    owned = false;
    if (auto bytes = decode_data_url(url)) {
      const fs::path p = tmp_ / ("img-" + std::to_string(++image_counter_));
      std::ofstream f(p, std::ios::binary);
      f.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
      if (!f) throw ApiError(500, "could not write the image to " + tmp_.string());
      owned = true;
      return p.string();
    }
    if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0) {
      throw ApiError(400, "image URLs are not fetched: send the picture as a data:image/...;base64 URL", "messages");
    }
    if (options_.image_root.empty()) {
      throw ApiError(400, "image file paths are read only under --image-root (not set); send a data: URL", "messages");
    }
    std::string path = url.rfind("file://", 0) == 0 ? url.substr(7) : url;
    std::error_code ec;
    const fs::path root = fs::weakly_canonical(options_.image_root, ec);
    fs::path p = fs::path(path).is_absolute() ? fs::path(path) : fs::path(options_.image_root) / path;
    p = fs::weakly_canonical(p, ec);
    const auto rel = p.lexically_relative(root);
    if (ec || rel.empty() || *rel.begin() == "..") {
      throw ApiError(400, "the image path is outside --image-root", "messages");
    }
    if (!fs::is_regular_file(p, ec)) throw ApiError(400, "no image file " + url + " under --image-root", "messages");
    return p.string();
  }

  Prepared prepare_chat(const ChatRequest& r) {
    Prepared out;
    out.workflow = workflow_of(r.model);
    out.request.workflow = out.workflow;
    out.request.sampling = sampling(r.sampling);
    for (auto& s : runtime::template_stops(templ_)) out.request.sampling.stop.push_back(s);
    runtime::ChatOptions o;
    o.templ = templ_;
    o.system = served_.cfg.chat.system;
    o.layout = served_.layout;
    o.llava_data = served_.cfg.data.format == "llava_json";
    const int64_t context = served_.model->llm().config().max_position_embeddings;
    o.max_prompt_tokens = std::min(served_.cfg.data.max_length, context - prefix_ - out.request.sampling.max_new_tokens);
    if (o.max_prompt_tokens < 1) throw ApiError(400, "max_tokens leaves no room for the prompt in the context", "max_tokens");
    std::string system, image, user;
    std::vector<std::pair<std::string, std::string>> exchanges;  // (user, assistant)
    int64_t image_turn = -1;
    for (const auto& m : r.messages) {
      if (m.role == "system") {
        system += (system.empty() ? "" : "\n") + m.text;
      } else if (m.role == "user") {
        user += (user.empty() ? "" : "\n") + m.text;
        if (!m.image.empty()) {
          if (!image.empty()) throw ApiError(400, "one image per conversation", "messages");
          image = m.image;
          image_turn = static_cast<int64_t>(exchanges.size());
        }
      } else {
        exchanges.emplace_back(user, m.text);
        user.clear();
      }
    }
    if (!system.empty()) o.system = system;
    const bool has_image = !image.empty();
    if (has_image && !served_.model->has_vision()) throw ApiError(400, "this model has no vision tower: send text only", "messages");
    if (has_image && served_.workflows && out.workflow == "text")
      throw ApiError(400, "the 'text' workflow cannot see pictures: pick an image workflow", "model");
    runtime::ChatSession session(*served_.tokenizer, o);
    bool owned = false;
    std::string file;
    struct Cleanup {
      std::string path;
      ~Cleanup() {
        if (!path.empty()) std::remove(path.c_str());
      }
    } cleanup;
    if (has_image) {
      file = image_file(image, owned);
      if (owned) cleanup.path = file;
    }
    for (size_t i = 0; i < exchanges.size(); ++i) {
      if (has_image && image_turn == static_cast<int64_t>(i)) session.set_image(file);
      session.commit(exchanges[i].first, exchanges[i].second);
    }
    if (has_image && image_turn == static_cast<int64_t>(exchanges.size())) session.set_image(file);
    runtime::ChatTurn turn;
    try {
      turn = session.prepare(user);
    } catch (const UsageError& e) {
      throw ApiError(400, "the prompt is longer than the context: " + std::string(e.what()), "messages",
                     "context_length_exceeded");
    }
    if (turn.dropped > 0) {
      throw ApiError(400, cat("the conversation takes more than the ", o.max_prompt_tokens,
                              " prompt positions the context leaves (max_tokens ", out.request.sampling.max_new_tokens,
                              "); shorten it"),
                     "messages", "context_length_exceeded");
    }
    data::Batch batch;
    try {
      batch = data::collate({turn.example}, *served_.tokenizer, served_.layout, collate_);
    } catch (const Error& e) {
      throw ApiError(400, std::string("the image cannot be used: ") + e.what(), "messages");
    }
    out.request.input = runtime::model_input(batch, torch::kCPU);
    out.request.primes = runtime::prompt_text_ids(out.request.input).front();
    return out;
  }

  Prepared prepare_completion(const CompletionRequest& r) {
    Prepared out;
    out.workflow = workflow_of(r.model);
    out.request.workflow = out.workflow;
    out.request.sampling = sampling(r.sampling);
    std::vector<int64_t> ids = served_.tokenizer->encode(r.prompt, true, false);
    const int64_t context = served_.model->llm().config().max_position_embeddings;
    const int64_t n = static_cast<int64_t>(ids.size());
    if (prefix_ + n + out.request.sampling.max_new_tokens > context) {
      throw ApiError(400, cat("the prompt's ", n, " tokens + max_tokens ", out.request.sampling.max_new_tokens,
                              " exceed the model's context of ", context, " positions"),
                     "prompt", "context_length_exceeded");
    }
    out.request.input.tokens = torch::tensor(ids, torch::kLong).view({1, n});  // [1, T]
    out.request.input.attention_mask = torch::ones({1, n}, torch::kBool);     // [1, T]
    out.request.primes = ids;
    return out;
  }

 private:

  ServedModel served_;
  ServerOptions options_;
  Engine engine_;
  data::CollateOptions collate_;
  data::Template templ_ = data::Template::kPlain;
  fs::path tmp_;
  int64_t prefix_ = 0;
  std::atomic<int64_t> image_counter_{0};
};

// The text a response shows: chat answers trimmed (as `mmtune chat` shows them), completions raw.
struct TextSink {
  explicit TextSink(bool chat) : chat(chat) {}
  bool chat;
  runtime::StreamFilter filter{{}};
  std::string raw;
  std::string push(const std::string& piece) {
    if (chat) return filter.push(piece);
    raw += piece;
    return piece;
  }
  std::string finish() { return chat ? filter.finish() : ""; }
  std::string text() const { return chat ? filter.text() : raw; }
};

struct Outcome {
  std::string finish;
  Usage usage;
};

void log_request(const std::string& id, const std::string& model, int status, const Outcome& o, double t0) {
  const double ms =
      (steady_seconds() - t0) * 1e3;
  log::info() << "request " << id << " model " << model << " status " << status << " prompt " << o.usage.prompt_tokens
              << " completion " << o.usage.completion_tokens << " tokens, " << cat(static_cast<int64_t>(ms)) << " ms"
              << (o.finish.empty() ? "" : ", finish " + o.finish);
}


// Waits for the engine's first event: an error is thrown as ApiError, anything else returned.
Event first_event(RequestStream& s) {
  Event e;
  while (!s.pop(e, 1000)) {
  }
  if (e.kind == Event::Kind::kError) throw ApiError(e.status, e.text);
  return e;
}

void handle_generation(Api& api, const httplib::Request& req, httplib::Response& res, bool chat) {
  static std::atomic<int64_t> counter{0};
  const double t0 = steady_seconds();
  const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(++counter);
  std::string model;
  try {
    Prepared p;
    bool stream = false;
    if (chat) {
      const ChatRequest r = parse_chat_request(req.body);
      model = r.model;
      stream = r.stream;
      p = api.prepare_chat(r);
    } else {
      const CompletionRequest r = parse_completion_request(req.body);
      model = r.model;
      stream = r.stream;
      p = api.prepare_completion(r);
    }
    auto s = api.engine().submit(std::move(p.request));
    if (!s) throw ApiError(503, "the server is busy (request queue full) or shutting down; retry later");
    const Event first = first_event(*s);
    const int64_t created = unix_time();
    if (!stream) {
      TextSink sink{chat};
      Event e = first;
      Outcome o;
      while (true) {
        if (e.kind == Event::Kind::kText) sink.push(e.text);
        if (e.kind == Event::Kind::kError) throw ApiError(e.status, e.text);
        if (e.kind == Event::Kind::kDone) {
          o.finish = finish_reason(e.finish_reason);
          o.usage = {e.prompt_tokens, e.completion_tokens};
          break;
        }
        while (!s->pop(e, 1000)) {
        }
      }
      res.set_content(chat ? chat_response_json(id, model, created, sink.text(), o.finish, o.usage)
                           : completion_response_json(id, model, created, sink.text(), o.finish, o.usage),
                      kJson);
      log_request(id, model, 200, o, t0);
      return;
    }
    struct StreamState {
      std::shared_ptr<RequestStream> s;
      TextSink sink;
      std::optional<Event> first;
      bool sent_first = false;
    };
    auto st = std::make_shared<StreamState>(StreamState{s, TextSink{chat}, first});
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [st, id, model, created, chat, t0](size_t, httplib::DataSink& out) {
          auto send = [&](const std::string& text, const std::string& finish, const Usage* usage) {
            const std::string j = chat ? chat_chunk_json(id, model, created, text, !st->sent_first, finish, usage)
                                       : completion_chunk_json(id, model, created, text, finish, usage);
            st->sent_first = true;
            const std::string frame = "data: " + j + "\n\n";
            return out.write(frame.data(), frame.size());
          };
          Event e;
          if (st->first) {
            e = std::move(*st->first);
            st->first.reset();
          } else if (!st->s->pop(e, 1000)) {
            return true;  // called again: a chance to notice a closed connection
          }
          bool ok = true;
          if (e.kind == Event::Kind::kText) {
            const std::string show = st->sink.push(e.text);
            if (!show.empty() || !st->sent_first) ok = send(show, "", nullptr);
          } else if (e.kind == Event::Kind::kDone) {
            Outcome o{finish_reason(e.finish_reason), {e.prompt_tokens, e.completion_tokens}};
            const std::string rest = st->sink.finish();
            if (!rest.empty()) ok = send(rest, "", nullptr);
            ok = ok && send("", o.finish, &o.usage);
            const std::string done = "data: [DONE]\n\n";
            ok = ok && out.write(done.data(), done.size());
            if (ok) out.done();
            log_request(id, model, 200, o, t0);
            return ok;
          } else {
            const std::string j = "data: " + error_json(ApiError(e.status, e.text)) + "\n\ndata: [DONE]\n\n";
            ok = out.write(j.data(), j.size());
            if (ok) out.done();
            log_request(id, model, e.status, Outcome{}, t0);
            return ok;
          }
          if (!ok) st->s->cancel();
          return ok;
        },
        [st](bool success) {
          if (!success) st->s->cancel();  // the client left: free its row
        });
  } catch (const ApiError& e) {
    send_error(res, e);
    log::info() << "request " << id << " model " << (model.empty() ? "?" : model) << " status " << e.status() << ": "
                << e.what();
  }
}

}  // namespace

int run_server(ServedModel served, const ServerOptions& options) {
  install_interrupt_handler();
  const std::vector<std::string> ids = served.ids;
  Api api(std::move(served), options);
  httplib::Server svr;
  const size_t threads = static_cast<size_t>(options.max_batch + options.max_queue + 4);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
  svr.set_error_handler(httplib::Server::HandlerWithResponse([&options](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 413) {
      send_error(res, ApiError(413, cat("the request body is over the limit of ", options.max_body_bytes, " bytes")));
    } else if (res.status == 404) {
      send_error(res, ApiError(404, "no such endpoint (see GET /v1/models, POST /v1/chat/completions, /v1/completions)"));
    } else {
      send_error(res, ApiError(res.status, "request failed with HTTP status " + std::to_string(res.status)));
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "internal error: " + what.substr(0, what.find('\n'))));
  });
  if (!options.api_key.empty()) {
    svr.set_pre_routing_handler([&options](const httplib::Request& req, httplib::Response& res) {
      if (req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      if (auth != "Bearer " + options.api_key) {
        send_error(res, ApiError(401, auth.empty() ? "missing API key: send Authorization: Bearer <key>"
                                                   : "incorrect API key", "", "invalid_request_error"));
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
  }
  const int64_t started = unix_time();
  svr.Get("/health", [&api](const httplib::Request&, httplib::Response& res) {
    res.set_content(cat("{\"status\":\"ok\",\"active\":", api.engine().active(), ",\"queued\":", api.engine().queued(), "}"),
                    kJson);
  });
  svr.Get("/v1/models", [ids, started](const httplib::Request&, httplib::Response& res) {
    res.set_content(models_json(ids, started), kJson);
  });
  svr.Post("/v1/chat/completions",
           [&api](const httplib::Request& req, httplib::Response& res) { handle_generation(api, req, res, true); });
  svr.Post("/v1/completions",
           [&api](const httplib::Request& req, httplib::Response& res) { handle_generation(api, req, res, false); });

  int port = options.port;
  if (port == 0) {
    port = svr.bind_to_any_port(options.host);
    if (port < 0) throw UsageError("cannot listen on " + options.host, "check --host");
  } else if (!svr.bind_to_port(options.host, port)) {
    throw UsageError(cat("cannot listen on ", options.host, ":", port), "the port may be in use: pick another --port");
  }
  std::atomic<bool> stopped{false};
  std::thread watcher([&] {
    while (!stopped && !interrupt_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stopped) return;
    log::info() << "serve: stopping (signal): no new requests; running answers get " << options.shutdown_grace_s
                << " s to finish";
    api.engine().shutdown(options.shutdown_grace_s);
    svr.stop();
  });
  log::info() << "serve: listening on http://" << options.host << ":" << port << " (models: " << join(ids, ", ")
              << "; max batch " << options.max_batch << ", queue " << options.max_queue
              << (options.api_key.empty() ? "" : ", API key required") << ")";
  const bool ok = svr.listen_after_bind();
  stopped = true;
  watcher.join();
  api.engine().shutdown(0);
  log::info() << "serve: stopped";
  return ok || interrupt_requested() ? 0 : 1;
}

}  // namespace mmtune::serve
