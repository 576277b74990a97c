// Batched generation with a KV cache: prompts are left-padded into one batch, prefilled at once,
// then decoded a token per step for the whole batch (greedy, or temperature / top-k / top-p with a
// seed), each row stopping at EOS, a stop string or max_new_tokens. Frozen models run under
// inference mode.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/adapters/adapter.h>
#include <mmtune/model/llama.h>
#include <mmtune/model/multimodal.h>
#include <mmtune/text/tokenizer.h>

namespace mmtune::runtime {

struct SamplingOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0 = greedy (argmax)
  double top_p = 1.0;
  int64_t top_k = 0;         // 0 = off
  double repetition_penalty = 1.0;
  uint64_t seed = 1;
  std::vector<std::string> stop;  // stop strings (the text is cut before them)
  bool stop_at_eos = true;
  std::string compat = "none";    // multimodal only: none | lavin (see generate() below)
};

struct Generation {
  std::vector<int64_t> tokens;  // generated ids (EOS excluded)
  std::string text;             // decoded, cut at a stop string
  std::string finish_reason;    // "eos" | "stop" | "length"
};

/// Called with (row, text) as soon as text of that row is final (streaming).
using StreamCallback = std::function<void(int64_t row, const std::string& text)>;

/// Next-token ids [B] from logits [B, V]; `generated` [B, N] (ids so far, for the repetition
/// penalty) may be undefined. Greedy when temperature == 0.
torch::Tensor sample_next(torch::Tensor logits, const SamplingOptions& opt, torch::Generator& gen,
                          const torch::Tensor& generated);

/// Generates a continuation for every prompt (token ids, BOS included if wanted).
/// Throws mmtune::UsageError when a prompt plus max_new_tokens exceeds the model's context.
std::vector<Generation> generate(model::LlamaDecoderImpl& model, const text::Tokenizer& tokenizer,
                                 const std::vector<std::vector<int64_t>>& prompts, const SamplingOptions& opt,
                                 const StreamCallback& on_text = {}, adapters::ForwardContext* ctx = nullptr);

/// The same for the multimodal model: `prompts` is a left-padded batch in the data::Batch layout
/// (image slots, has_image, images); the adapter's prefix (LaVIN's modality token) is added by the
/// model. Rows whose text is streamed are indexed as in `prompts`.
/// opt.compat "lavin" runs LaVIN's official batched loop instead (lavin/generator.py): the prompts
/// right-padded, the batch prefilled up to its shortest prompt S only, then one position per step
/// for every row, a row still inside its prompt fed its own next prompt token (and that step's
/// output ignored), the others their sampled token. With the MMA option rope_decode_offset 0 the
/// positions are the official ones too (every token fed after the prefill one position early), so
/// a row's output depends on the batch it is in, as the published numbers did. Every image slot
/// must lie within the first S tokens (LaVIN's image sits after "Image: ").
std::vector<Generation> generate(model::MultimodalLMImpl& model, const text::Tokenizer& tokenizer,
                                 const model::MultimodalInput& prompts, const SamplingOptions& opt,
                                 const StreamCallback& on_text = {}, adapters::ForwardContext* ctx = nullptr);

/// Per row of `prompts`, its real text tokens (no padding, no image slots), in order: what the
/// row's decoded text continues (SentencePiece's leading-space rule primes the stream decoder).
std::vector<std::vector<int64_t>> prompt_text_ids(const model::MultimodalInput& prompts);

/// Positions the multimodal model puts in front of every prompt (LaVIN's modality token; 0 for
/// most families). They count against the context: a prompt budget is context - this - new tokens.
int64_t prefix_positions(model::MultimodalLMImpl& model, int64_t bos_id);

}  // namespace mmtune::runtime
