#include <mmtune/core/errors.h>
#include <mmtune/core/signals.h>
#include <mmtune/core/strings.h>
#include <mmtune/runtime/generator.h>
#include <mmtune/runtime/stop_strings.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace mmtune::runtime {

torch::Tensor sample_next(torch::Tensor logits, const SamplingOptions& opt, torch::Generator& gen,
                          const torch::Tensor& generated) {
  logits = logits.to(torch::kFloat32);  // [B, V]
  if (opt.repetition_penalty != 1.0 && generated.defined() && generated.numel() > 0) {
    // CTRL penalty on ids already generated: positive logits divided, negative multiplied
    const torch::Tensor seen = logits.gather(1, generated);
    const torch::Tensor penalised =
        torch::where(seen > 0, seen / opt.repetition_penalty, seen * opt.repetition_penalty);
    logits = logits.scatter(1, generated, penalised);
  }
  if (opt.temperature <= 0) return logits.argmax(-1);
  // Sampling runs on the CPU with the seeded CPU generator, whatever the model's device: [B, V] is
  // small, and the same seed gives the same text on CPU and CUDA.
  logits = logits.to(torch::kCPU) / opt.temperature;
  if (opt.top_k > 0 && opt.top_k < logits.size(-1)) {
    const torch::Tensor kth = std::get<0>(logits.topk(opt.top_k, -1)).narrow(-1, opt.top_k - 1, 1);
    logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
  }
  if (opt.top_p < 1.0) {
    // keep the smallest prefix of the sorted distribution whose mass reaches top_p
    auto [sorted, order] = logits.sort(-1, /*descending=*/true);
    const torch::Tensor cum = sorted.softmax(-1).cumsum(-1);
    const torch::Tensor drop_sorted = (cum - sorted.softmax(-1)) > opt.top_p;  // mass before this token
    const torch::Tensor drop = torch::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    logits = logits.masked_fill(drop, -std::numeric_limits<float>::infinity());
  }
  return torch::multinomial(logits.softmax(-1), 1, /*replacement=*/false, gen).squeeze(-1);
}

namespace {

// Left-pads prompts into ids [B, T] and a mask [B, T] (1 = real token).
std::pair<torch::Tensor, torch::Tensor> left_pad(const std::vector<std::vector<int64_t>>& prompts, int64_t pad,
                                                 const torch::Device& dev) {
  int64_t T = 0;
  for (const auto& p : prompts) T = std::max<int64_t>(T, p.size());
  const int64_t B = prompts.size();
  torch::Tensor ids = torch::full({B, T}, pad, torch::kLong);
  torch::Tensor mask = torch::zeros({B, T}, torch::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = prompts[b].size();
    if (n == 0) continue;
    ids[b].narrow(0, T - n, n).copy_(torch::tensor(prompts[b], torch::kLong));
    mask[b].narrow(0, T - n, n).fill_(1);
  }
  return {ids.to(dev), mask.to(dev)};
}

// Cuts `text` before the first stop string; true if one was found.
bool cut_at_stop(std::string& text, const std::vector<std::string>& stops) {
  const size_t best = find_stop(text, stops);
  if (best == std::string::npos) return false;
  text.resize(best);
  return true;
}

}  // namespace

namespace {

// One row's output as it is generated: the ids, the streamed text (its decoder primed with the
// prompt, so the text it returns is exactly what follows the prompt: SentencePiece drops a leading
// space only at the start of a sequence) and whether the row has finished.
class RowOutput {
 public:
  RowOutput(const text::Tokenizer& tok, const std::vector<int64_t>& prime) : stream_(tok) {
    for (int64_t id : prime) stream_.push(id);
  }
  bool done() const { return done_; }
  // Takes the row's next sampled id: EOS, a stop string or max_new_tokens finish the row.
  void take(int64_t id, int64_t row, const text::Tokenizer& tok, const SamplingOptions& opt, const StreamCallback& on_text) {
    if (done_) return;
    if (opt.stop_at_eos && id == tok.eos_id()) {
      finish("eos", row, opt, on_text);
      return;
    }
    out_.tokens.push_back(id);
    const std::string piece = stream_.push(id);
    out_.text += piece;
    if (on_text && !piece.empty()) on_text(row, piece);
    if (cut_at_stop(out_.text, opt.stop)) {
      done_ = true;
      out_.finish_reason = "stop";
    } else if (static_cast<int64_t>(out_.tokens.size()) >= opt.max_new_tokens) {
      finish("length", row, opt, on_text);
    }
  }
  // Ends the row (if it has not ended): the decoder's held-back text, then the stop-string cut.
  void finish(const char* reason, int64_t row, const SamplingOptions& opt, const StreamCallback& on_text) {
    if (done_) return;
    done_ = true;
    out_.finish_reason = reason;
    const std::string rest = stream_.flush();
    out_.text += rest;
    if (on_text && !rest.empty()) on_text(row, rest);
    if (cut_at_stop(out_.text, opt.stop)) out_.finish_reason = "stop";
  }
  Generation result() && { return std::move(out_); }

 private:
  text::StreamDecoder stream_;
  Generation out_;
  bool done_ = false;
};

std::vector<Generation> results(std::vector<RowOutput>& rows) {
  std::vector<Generation> out;
  for (auto& r : rows) out.push_back(std::move(r).result());
  return out;
}

// The sampling loop shared by the plain decoder and the multimodal model. `first` are the logits
// [B, V] after the prompt; `step(next [B, 1])` returns the logits [B, V] after one more token.
// `primes[b]` are the ids the row's text continues (for SentencePiece's leading-space rule).
std::vector<Generation> sample_loop(torch::Tensor logits, const std::function<torch::Tensor(const torch::Tensor&)>& step,
                                    const text::Tokenizer& tok, const std::vector<std::vector<int64_t>>& primes,
                                    const SamplingOptions& opt, const StreamCallback& on_text, const torch::Device& dev) {
  const int64_t B = static_cast<int64_t>(primes.size());
  std::vector<RowOutput> rows;
  for (int64_t b = 0; b < B; ++b) rows.emplace_back(tok, primes[b]);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opt.seed);
  torch::Tensor generated;  // [B, N]
  for (int64_t step_i = 0; step_i < opt.max_new_tokens; ++step_i) {
    throw_if_interrupted();
    const torch::Tensor next = sample_next(logits, opt, gen, generated).to(dev, torch::kLong);  // [B]
    generated = generated.defined() ? torch::cat({generated, next.unsqueeze(1)}, 1) : next.unsqueeze(1);  // [B, N]
    const auto next_cpu = next.cpu();
    for (int64_t b = 0; b < B; ++b) rows[b].take(next_cpu[b].item<int64_t>(), b, tok, opt, on_text);
    if (std::all_of(rows.begin(), rows.end(), [](const RowOutput& r) { return r.done(); })) break;
    logits = step(next.unsqueeze(1));
  }
  for (int64_t b = 0; b < B; ++b) rows[b].finish("length", b, opt, on_text);
  return results(rows);
}

// LaVIN's official batched loop (opt.compat "lavin"; lavin/generator.py, see generator.h).
std::vector<Generation> lavin_loop(model::MultimodalLMImpl& model, const text::Tokenizer& tok,
                                   const model::MultimodalInput& prompts, const SamplingOptions& opt,
                                   const StreamCallback& on_text, adapters::ForwardContext& ctx) {
  const int64_t B = prompts.tokens.size(0), T = prompts.tokens.size(1);
  const auto dev = model.llm().options().device();
  // each row's real columns, moved to the left: right padding [B, total]
  const torch::Tensor real = (prompts.attention_mask.defined() ? prompts.attention_mask.cpu().to(torch::kBool)
                                                                : torch::ones({B, T}, torch::kBool));  // [B, T]
  const torch::Tensor slots_in = prompts.image_slots.defined() ? prompts.image_slots.cpu().to(torch::kBool)
                                                               : torch::zeros({B, T}, torch::kBool);
  std::vector<int64_t> len(B);
  for (int64_t b = 0; b < B; ++b) len[b] = real[b].sum().item<int64_t>();
  const int64_t S = *std::min_element(len.begin(), len.end()), longest = *std::max_element(len.begin(), len.end());
  if (S == 0) throw Error("generation prompt is empty", "every prompt needs at least one token");
  const int64_t total = longest + opt.max_new_tokens;  // LaVIN: min(max_seq_len, max_gen_len + longest)
  torch::Tensor tokens = torch::full({B, total}, std::max<int64_t>(tok.pad_id(), 0), torch::kLong);  // [B, total]
  torch::Tensor slots = torch::zeros({B, total}, torch::kBool);                                    // [B, total]
  for (int64_t b = 0; b < B; ++b) {
    const torch::Tensor cols = real[b].nonzero().squeeze(1);
    tokens[b].narrow(0, 0, len[b]).copy_(prompts.tokens[b].cpu().index_select(0, cols));
    slots[b].narrow(0, 0, len[b]).copy_(slots_in[b].index_select(0, cols));
  }
  if (slots.narrow(1, S, total - S).any().item<bool>()) {
    throw Error(cat("generation.compat lavin: an image sits beyond the batch's shortest prompt (", S, " tokens)"),
                "LaVIN's loop feeds those positions one token at a time; use compat none or eval.batch_size 1");
  }
  model::MultimodalInput first;
  first.tokens = tokens.narrow(1, 0, S).to(dev);
  first.image_slots = slots.narrow(1, 0, S).to(dev);
  first.attention_mask = torch::ones({B, S}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  first.has_image = prompts.has_image;
  first.images = prompts.images;
  model::KVCache cache;
  torch::Tensor logits = model.prefill(first, total - S, cache, ctx).select(1, S - 1);  // [B, V]

  std::vector<RowOutput> rows;
  const auto primes = prompt_text_ids(prompts);
  for (int64_t b = 0; b < B; ++b) rows.emplace_back(tok, primes[b]);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opt.seed);
  const torch::Tensor ones = torch::ones({B, 1}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  for (int64_t cur = S; cur < total; ++cur) {
    throw_if_interrupted();
    // every row samples (LaVIN draws for rows inside their prompt too); those rows keep their prompt token
    const torch::Tensor next = sample_next(logits, opt, gen, {}).cpu();  // [B]
    for (int64_t b = 0; b < B; ++b) {
      if (cur < len[b]) continue;
      const int64_t id = next[b].item<int64_t>();
      tokens[b][cur] = id;
      rows[b].take(id, b, tok, opt, on_text);
    }
    if (std::all_of(rows.begin(), rows.end(), [](const RowOutput& r) { return r.done(); }) || cur + 1 == total) break;
    model::MultimodalInput in;
    in.tokens = tokens.narrow(1, cur, 1).to(dev);  // [B, 1]
    in.attention_mask = ones;
    logits = model.forward(in, &cache, ctx).select(1, 0);
  }
  for (int64_t b = 0; b < B; ++b) rows[b].finish("length", b, opt, on_text);
  return results(rows);
}

}  // namespace

std::vector<Generation> generate(model::LlamaDecoderImpl& model, const text::Tokenizer& tok,
                                 const std::vector<std::vector<int64_t>>& prompts, const SamplingOptions& opt,
                                 const StreamCallback& on_text, adapters::ForwardContext* ctx_in) {
  torch::InferenceMode guard;
  const int64_t B = prompts.size();
  if (B == 0) return {};
  if (opt.compat != "none")
    throw UsageError("generation.compat " + opt.compat + " applies to multimodal models", "use compat none");
  auto [ids, mask] = left_pad(prompts, tok.pad_id(), model.options().device());
  const int64_t T = ids.size(1);
  const int64_t limit = model.config().max_position_embeddings;
  if (T + opt.max_new_tokens > limit) {
    throw UsageError(cat("prompt of ", T, " tokens + ", opt.max_new_tokens, " new tokens exceeds the model's context of ",
                         limit, " positions"), "shorten the prompt or lower max_new_tokens");
  }
  adapters::ForwardContext local_ctx;
  adapters::ForwardContext& ctx = ctx_in ? *ctx_in : local_ctx;
  model::KVCache cache = model.new_cache(B, T + opt.max_new_tokens);
  const torch::Tensor first = model.forward({ids, {}, mask, {}}, &cache, ctx).select(1, T - 1);  // [B, V]
  const torch::Tensor ones = torch::ones({B, 1}, torch::TensorOptions().dtype(torch::kLong).device(ids.device()));
  auto step = [&](const torch::Tensor& next) { return model.forward({next, {}, ones, {}}, &cache, ctx).select(1, 0); };
  return sample_loop(first, step, tok, prompts, opt, on_text, ids.device());
}

std::vector<Generation> generate(model::MultimodalLMImpl& model, const text::Tokenizer& tok,
                                 const model::MultimodalInput& prompts, const SamplingOptions& opt,
                                 const StreamCallback& on_text, adapters::ForwardContext* ctx_in) {
  torch::InferenceMode guard;
  const int64_t B = prompts.tokens.size(0), T = prompts.tokens.size(1);
  if (B == 0) return {};
  const auto dev = model.llm().options().device();
  // the rows must end at the last column: generation continues every row from there
  if (prompts.attention_mask.defined() && !prompts.attention_mask.select(1, T - 1).to(torch::kBool).all().item<bool>())
    throw Error("generation prompts must be left-padded", "collate with PadSide::kLeft");
  adapters::ForwardContext local_ctx;
  adapters::ForwardContext& ctx = ctx_in ? *ctx_in : local_ctx;
  if (opt.compat == "lavin") return lavin_loop(model, tok, prompts, opt, on_text, ctx);
  if (opt.compat != "none") throw UsageError("unknown generation.compat '" + opt.compat + "'", "use none or lavin");
  model::KVCache cache;
  const torch::Tensor first = model.prefill(prompts, opt.max_new_tokens, cache, ctx).select(1, T - 1);  // [B, V]
  const auto primes = prompt_text_ids(prompts);  // each row's text continues its prompt's
  const torch::Tensor ones = torch::ones({B, 1}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  auto step = [&](const torch::Tensor& next) {
    model::MultimodalInput in;
    in.tokens = next;
    in.attention_mask = ones;
    return model.forward(in, &cache, ctx).select(1, 0);
  };
  return sample_loop(first, step, tok, primes, opt, on_text, dev);
}

std::vector<std::vector<int64_t>> prompt_text_ids(const model::MultimodalInput& prompts) {
  const int64_t B = prompts.tokens.size(0), T = prompts.tokens.size(1);
  const torch::Tensor keep_t = (prompts.attention_mask.defined() ? prompts.attention_mask.cpu().to(torch::kBool)
                                                                  : torch::ones({B, T}, torch::kBool)) &
                               (prompts.image_slots.defined() ? ~prompts.image_slots.cpu().to(torch::kBool)
                                                              : torch::ones({B, T}, torch::kBool));  // [B, T]
  const torch::Tensor ids = prompts.tokens.cpu().contiguous(), keep = keep_t.contiguous();
  std::vector<std::vector<int64_t>> out(B);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* row = ids[b].data_ptr<int64_t>();
    const bool* k = keep[b].data_ptr<bool>();
    for (int64_t t = 0; t < T; ++t)
      if (k[t]) out[b].push_back(row[t]);
  }
  return out;
}

int64_t prefix_positions(model::MultimodalLMImpl& model, int64_t bos_id) {
  torch::InferenceMode guard;
  adapters::ForwardContext ctx;
  model::MultimodalInput one;
  const auto opts = torch::TensorOptions().dtype(torch::kLong).device(model.llm().options().device());
  one.tokens = torch::full({1, 1}, std::max<int64_t>(bos_id, 0), opts);  // [1, 1]
  return model.assemble(one, ctx).prefix;
}

}  // namespace mmtune::runtime
