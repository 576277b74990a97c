#include <mmtune/adapters/workflows.h>
#include <mmtune/core/clock.h>
#include <mmtune/core/errors.h>
#include <mmtune/core/logging.h>
#include <mmtune/runtime/stop_strings.h>
#include <mmtune/serve/engine.h>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <map>

namespace mmtune::serve {

void RequestStream::push(Event e) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

bool RequestStream::pop(Event& e, int timeout_ms) {
  std::unique_lock<std::mutex> lk(mu_);
  if (!cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return !events_.empty(); })) return false;
  e = std::move(events_.front());
  events_.pop_front();
  return true;
}

struct Pending {
  GenerationRequest request;
  std::shared_ptr<RequestStream> stream;
};

namespace {

// `old` [B, ..., cap, ...] (time along `dim`) and a solo row `add` [1, ...] -> [B + 1, ..., cap', ...]:
// the prefix columns [0, pfx) stay first, the old rows' body [start, start + old_len) and the new
// row's body [pfx, pfx + add_len) are right-aligned to end at column `len`.
torch::Tensor place(const torch::Tensor& old, int64_t start, int64_t old_len, const torch::Tensor& add, int64_t add_len,
                    int64_t pfx, int64_t len, int64_t cap, int64_t dim) {
  const int64_t B = old.defined() ? old.size(0) : 0;
  std::vector<int64_t> sizes = add.sizes().vec();
  sizes[0] = B + 1;
  sizes[dim] = cap;
  torch::Tensor out = torch::zeros(sizes, add.options());  // [B + 1, ..., cap, ...]
  if (B > 0) {
    torch::Tensor rows = out.narrow(0, 0, B);
    if (pfx > 0) rows.narrow(dim, 0, pfx).copy_(old.narrow(dim, 0, pfx));
    if (old_len > 0) rows.narrow(dim, len - old_len, old_len).copy_(old.narrow(dim, start, old_len));
  }
  torch::Tensor row = out.narrow(0, B, 1);
  if (pfx > 0) row.narrow(dim, 0, pfx).copy_(add.narrow(dim, 0, pfx));
  row.narrow(dim, len - add_len, add_len).copy_(add.narrow(dim, pfx, add_len));
  return out;
}

}  // namespace

struct Engine::Row {
  std::shared_ptr<RequestStream> stream;
  runtime::SamplingOptions opt;
  at::Generator gen;
  text::StreamDecoder decoder;
  std::vector<int64_t> tokens;  // sampled ids, EOS excluded
  int64_t sampled = 0;          // ids sampled (EOS included)
  int64_t next = 0;             // the id the next decode step feeds
  int64_t prompt_tokens = 0;
  std::string text;  // everything decoded so far
  size_t emitted = 0;
  bool done = false;

  Row(const text::Tokenizer& tok, runtime::SamplingOptions o)
      : opt(std::move(o)), gen(at::make_generator<at::CPUGeneratorImpl>(opt.seed)), decoder(tok) {}

  void emit(size_t end) {
    if (end > emitted) {
      Event e;
      e.text = text.substr(emitted, end - emitted);
      emitted = end;
      stream->push(std::move(e));
    }
  }
  void finish(std::string reason) {
    text += decoder.flush();
    if (size_t cut = runtime::find_stop(text, opt.stop); cut != std::string::npos) {
      text.resize(cut);
      reason = "stop";
    }
    emit(text.size());
    Event e;
    e.kind = Event::Kind::kDone;
    e.finish_reason = std::move(reason);
    e.prompt_tokens = prompt_tokens;
    e.completion_tokens = sampled;
    stream->push(std::move(e));
    done = true;
  }
  // Takes a sampled id, as generate's sample loop does; true when the row is finished.
  bool take(int64_t id, int64_t eos) {
    ++sampled;
    next = id;
    if (opt.stop_at_eos && id == eos) {
      finish("eos");
      return true;
    }
    tokens.push_back(id);
    text += decoder.push(id);
    if (size_t cut = runtime::find_stop(text, opt.stop); cut != std::string::npos) {
      text.resize(cut);
      finish("stop");
      return true;
    }
    if (sampled >= opt.max_new_tokens) {
      finish("length");
      return true;
    }
    emit(runtime::stop_safe_end(text, opt.stop));
    return false;
  }
};

// The rows of one workflow decoded together, their caches on one timeline.
struct Engine::Group {
  std::string workflow;
  int64_t prefix = 0;  // the model's prefix positions (first columns of every row)
  model::KVCache cache;
  std::map<std::string, torch::Tensor> state;  // per-row adapter state [B, ...]
  torch::Tensor modality;                      // [B]
  std::vector<std::unique_ptr<Row>> rows;

  // Splices a prefilled row (its solo cache and adapter state) in as the last row.
  void join(std::unique_ptr<Row> row, const model::KVCache& solo, const adapters::ForwardContext& ctx) {
    const int64_t B = static_cast<int64_t>(rows.size()), L = cache.length;
    int64_t start = L;  // first column a row's body uses
    if (B > 0 && L > prefix) {
      const torch::Tensor used = cache.key_valid.narrow(1, prefix, L - prefix).any(0).nonzero();  // [n, 1]
      if (used.numel() > 0) start = prefix + used[0][0].item<int64_t>();
    }
    const int64_t old_len = L - start, add_len = solo.length - prefix;
    const int64_t len = prefix + std::max(old_len, add_len);
    int64_t rem = row->opt.max_new_tokens - row->sampled;
    for (const auto& r : rows) rem = std::max(rem, r->opt.max_new_tokens - r->sampled);
    const int64_t cap = len + std::max<int64_t>(rem, 1);
    model::KVCache next;
    next.length = len;
    next.capacity = cap;
    auto merge = [&](const model::LayerCache* old, const model::LayerCache& add) {
      return model::LayerCache{place(old ? old->k : torch::Tensor(), start, old_len, add.k, add_len, prefix, len, cap, 2),
                               place(old ? old->v : torch::Tensor(), start, old_len, add.v, add_len, prefix, len, cap, 2)};
    };
    for (size_t i = 0; i < solo.layers.size(); ++i) next.layers.push_back(merge(B ? &cache.layers[i] : nullptr, solo.layers[i]));
    for (const auto& [key, add] : solo.extra) {
      auto it = cache.extra.find(key);
      TORCH_CHECK(B == 0 || it != cache.extra.end(), "serve: a request's cache has a block the batch has not: ", key);
      next.extra.emplace(key, merge(B ? &it->second : nullptr, add));
    }
    next.key_valid = place(B ? cache.key_valid : torch::Tensor(), start, old_len, solo.key_valid, add_len, prefix, len, cap, 1);
    std::map<std::string, torch::Tensor> st;
    for (const auto& [key, t] : ctx.state) {
      if (t.dim() < 1 || t.size(0) != 1) continue;  // per-row state only (accumulators are per forward)
      if (B == 0) {
        st[key] = t;
        continue;
      }
      auto it = state.find(key);
      TORCH_CHECK(it != state.end(), "serve: a request's adapter state has a key the batch has not: ", key);
      st[key] = torch::cat({it->second, t}, 0);
    }
    TORCH_CHECK(B == 0 || st.size() == state.size(), "serve: the batch's adapter state differs from the request's");
    if (ctx.modality.defined()) modality = B ? torch::cat({modality, ctx.modality}, 0) : ctx.modality;
    cache = std::move(next);
    state = std::move(st);
    rows.push_back(std::move(row));
  }

  // Drops finished rows from the batch.
  void compact() {
    std::vector<int64_t> keep;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!rows[i]->done) keep.push_back(static_cast<int64_t>(i));
    }
    if (keep.size() == rows.size()) return;
    std::vector<std::unique_ptr<Row>> kept;
    for (int64_t i : keep) kept.push_back(std::move(rows[i]));
    rows = std::move(kept);
    if (rows.empty()) {
      cache = model::KVCache();
      state.clear();
      modality = torch::Tensor();
      return;
    }
    const torch::Tensor idx = torch::tensor(keep, torch::kLong).to(cache.key_valid.device());
    auto sel = [&](torch::Tensor& t) { t = t.index_select(0, idx.to(t.device())); };
    for (auto& l : cache.layers) sel(l.k), sel(l.v);
    for (auto& [key, l] : cache.extra) sel(l.k), sel(l.v);
    sel(cache.key_valid);
    for (auto& [key, t] : state) sel(t);
    if (modality.defined()) sel(modality);
  }
};

Engine::Engine(model::MultimodalLM model, const text::Tokenizer& tok, EngineOptions options)
    : model_(std::move(model)), tok_(tok), options_(options) {
  has_workflows_ = adapters::workflow_names(model_->llm()).size() > 1;
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() { shutdown(0); }

int64_t Engine::queued() {
  std::lock_guard<std::mutex> lk(mu_);
  return static_cast<int64_t>(pending_.size());
}

std::shared_ptr<RequestStream> Engine::submit(GenerationRequest request) {
  auto p = std::make_unique<Pending>();
  p->request = std::move(request);
  p->stream = std::make_shared<RequestStream>();
  auto stream = p->stream;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_ || static_cast<int64_t>(pending_.size()) >= options_.max_queue) return nullptr;
    pending_.push_back(std::move(p));
  }
  cv_.notify_all();
  return stream;
}

void Engine::shutdown(double grace_s) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!stopping_) {
      stopping_ = true;
      deadline_ = steady_seconds() + grace_s;
    } else {
      deadline_ = std::min(deadline_, steady_seconds() + grace_s);
    }
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Engine::admit(Pending& p) {
  GenerationRequest& r = p.request;
  try {
    if (has_workflows_) adapters::select_workflow(model_->llm(), r.workflow);
    adapters::ForwardContext ctx;
    model::KVCache solo;
    const int64_t T = r.input.tokens.size(1);
    const torch::Tensor logits =
        model_->prefill(r.input, r.sampling.max_new_tokens, solo, ctx).select(1, T - 1);  // [1, V]
    auto row = std::make_unique<Row>(tok_, r.sampling);
    row->stream = p.stream;
    row->prompt_tokens = solo.length;
    for (int64_t id : r.primes) row->decoder.push(id);
    const int64_t id = runtime::sample_next(logits, row->opt, row->gen, torch::Tensor()).item<int64_t>();
    if (row->take(id, tok_.eos_id())) return;
    const int64_t prefix = solo.length - T;
    Group* g = nullptr;
    for (auto& x : groups_) {
      if (x->workflow == r.workflow && x->prefix == prefix) g = x.get();
    }
    if (!g) {
      groups_.push_back(std::make_unique<Group>());
      g = groups_.back().get();
      g->workflow = r.workflow;
      g->prefix = prefix;
    }
    g->join(std::move(row), solo, ctx);
    ++active_;
  } catch (const UsageError& e) {
    p.stream->push(Event{Event::Kind::kError, e.one_line(), "", 400});
  } catch (const Error& e) {
    p.stream->push(Event{Event::Kind::kError, e.one_line(), "", 400});
  } catch (const c10::Error& e) {
    p.stream->push(Event{Event::Kind::kError, std::string("torch: ") + e.what_without_backtrace(), "", 500});
  } catch (const std::exception& e) {
    p.stream->push(Event{Event::Kind::kError, e.what(), "", 500});
  }
}

void Engine::step(Group& g) {
  for (auto& r : g.rows) {
    if (r->stream->cancelled() && !r->done) {  // the client left: its row goes
      r->done = true;
      --active_;
    }
  }
  g.compact();
  if (g.rows.empty()) return;
  const int64_t B = static_cast<int64_t>(g.rows.size());
  auto& llm = model_->llm();
  const auto dev = llm.options().device();
  std::vector<int64_t> next(B);
  for (int64_t b = 0; b < B; ++b) next[b] = g.rows[b]->next;
  if (has_workflows_) adapters::select_workflow(llm, g.workflow);
  adapters::ForwardContext ctx;
  ctx.state = g.state;
  ctx.modality = g.modality;
  model::DecoderInput d;
  d.ids = torch::tensor(next, torch::kLong).view({B, 1}).to(dev);                    // [B, 1]
  d.attention_mask = torch::ones({B, 1}, torch::TensorOptions().dtype(torch::kBool).device(dev));  // [B, 1]
  const torch::Tensor logits = llm.forward(d, &g.cache, ctx).select(1, 0).to(torch::kFloat32);     // [B, V]
  const torch::Tensor greedy = logits.argmax(-1).cpu();                                            // [B]
  for (int64_t b = 0; b < B; ++b) {
    Row& r = *g.rows[b];
    int64_t id;
    if (r.opt.temperature <= 0 && r.opt.repetition_penalty == 1.0) {
      id = greedy[b].item<int64_t>();
    } else {
      const torch::Tensor seen =
          torch::tensor(r.tokens, torch::kLong).view({1, static_cast<int64_t>(r.tokens.size())}).to(dev);  // [1, N]
      id = runtime::sample_next(logits.narrow(0, b, 1), r.opt, r.gen, seen).item<int64_t>();
    }
    if (r.take(id, tok_.eos_id())) --active_;
  }
  g.compact();
}

void Engine::loop() {
  torch::InferenceMode guard;
  while (true) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return stopping_ || !pending_.empty() || active_ > 0; });
    if (stopping_) {
      for (auto& p : pending_) p->stream->push(Event{Event::Kind::kError, "the server is shutting down", "", 503});
      pending_.clear();
      if (active_ == 0) break;
      if (steady_seconds() >= deadline_) {
        for (auto& g : groups_) {
          for (auto& r : g->rows) {
            if (!r->done) r->finish("length");
          }
        }
        groups_.clear();
        active_ = 0;
        break;
      }
    }
    while (!pending_.empty() && active_ < options_.max_batch && !stopping_) {
      std::unique_ptr<Pending> p = std::move(pending_.front());
      pending_.pop_front();
      lk.unlock();
      admit(*p);
      lk.lock();
    }
    lk.unlock();
    for (auto& g : groups_) {
      try {
        step(*g);
      } catch (const std::exception& e) {
        const std::string what = e.what();
        log::error() << "serve: a decode step failed: " << what.substr(0, what.find('\n'));
        for (auto& r : g->rows) {
          if (!r->done) {
            r->stream->push(Event{Event::Kind::kError, "generation failed: " + what.substr(0, what.find('\n')), "", 500});
            r->done = true;
            --active_;
          }
        }
        g->compact();
      }
    }
    std::erase_if(groups_, [](const auto& g) { return g->rows.empty(); });
  }
}

}  // namespace mmtune::serve
