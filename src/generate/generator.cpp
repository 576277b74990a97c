#include <mmtune/core/errors.h>
#include <mmtune/core/signals.h>
#include <mmtune/core/strings.h>
#include <mmtune/generate/generator.h>
#include <mmtune/generate/stop_strings.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace mmtune::generate {

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

// The sampling loop shared by the plain decoder and the multimodal model. `first` are the logits
// [B, V] after the prompt; `step(next [B, 1])` returns the logits [B, V] after one more token.
// `primes[b]` are the ids the row's text continues (for SentencePiece's leading-space rule).
std::vector<Generation> sample_loop(torch::Tensor logits, const std::function<torch::Tensor(const torch::Tensor&)>& step,
                                    const model::Tokenizer& tok, const std::vector<std::vector<int64_t>>& primes,
                                    const SamplingOptions& opt, const StreamCallback& on_text, const torch::Device& dev) {
  const int64_t B = static_cast<int64_t>(primes.size());
  std::vector<Generation> out(B);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opt.seed);
  // Each row's stream decoder is primed with its prompt, so the text it returns is exactly what
  // follows the prompt (SentencePiece drops a leading space only at the start of a sequence).
  std::vector<model::StreamDecoder> streams(B, model::StreamDecoder(tok));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t id : primes[b]) streams[b].push(id);
  }
  std::vector<bool> done(B, false);
  torch::Tensor generated;  // [B, N]
  for (int64_t step_i = 0; step_i < opt.max_new_tokens; ++step_i) {
    throw_if_interrupted();
    const torch::Tensor next = sample_next(logits, opt, gen, generated).to(dev, torch::kLong);  // [B]
    generated = generated.defined() ? torch::cat({generated, next.unsqueeze(1)}, 1) : next.unsqueeze(1);  // [B, N]
    const auto next_cpu = next.cpu();
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      const int64_t id = next_cpu[b].item<int64_t>();
      if (opt.stop_at_eos && id == tok.eos_id()) {
        done[b] = true;
        out[b].finish_reason = "eos";
        const std::string rest = streams[b].flush();
        out[b].text += rest;
        if (cut_at_stop(out[b].text, opt.stop)) out[b].finish_reason = "stop";
        if (on_text && !rest.empty()) on_text(b, rest);
        continue;
      }
      out[b].tokens.push_back(id);
      const std::string piece = streams[b].push(id);
      out[b].text += piece;
      if (cut_at_stop(out[b].text, opt.stop)) {
        done[b] = true;
        out[b].finish_reason = "stop";
      }
      if (on_text && !piece.empty()) on_text(b, piece);
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; }) || step_i + 1 == opt.max_new_tokens) break;
    logits = step(next.unsqueeze(1));
  }
  for (int64_t b = 0; b < B; ++b) {
    if (out[b].finish_reason.empty()) {
      out[b].finish_reason = "length";
      const std::string rest = streams[b].flush();
      out[b].text += rest;
      if (on_text && !rest.empty()) on_text(b, rest);
      if (cut_at_stop(out[b].text, opt.stop)) out[b].finish_reason = "stop";
    }
  }
  return out;
}

}  // namespace

std::vector<Generation> generate(model::LlamaDecoderImpl& model, const model::Tokenizer& tok,
                                 const std::vector<std::vector<int64_t>>& prompts, const SamplingOptions& opt,
                                 const StreamCallback& on_text, adapters::ForwardContext* ctx_in) {
  torch::InferenceMode guard;
  const int64_t B = prompts.size();
  if (B == 0) return {};
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

std::vector<Generation> generate(model::MultimodalLMImpl& model, const model::Tokenizer& tok,
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

}  // namespace mmtune::generate
