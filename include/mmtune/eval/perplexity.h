// Perplexity of a text under a frozen (or adapted) LLaMA: BOS + the text's tokens, scored in
// windows of at most the model's context that share one token with the next, so every token after
// the first is predicted exactly once (a text within one window is scored like transformers does).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <mmtune/model/llama.h>
#include <mmtune/text/tokenizer.h>

namespace mmtune::eval {

struct PerplexityResult {
  int64_t tokens = 0;   // predicted tokens
  double nll_sum = 0;   // summed negative log-likelihood (nats)
  double mean_nll() const { return tokens ? nll_sum / tokens : 0.0; }
  double perplexity() const;
};

/// Called for every predicted token: (position in the token sequence, token id, log-probability).
using TokenLogprob = std::function<void(int64_t index, int64_t token, double logprob)>;

/// Scores `text`; `window` 0 = the model's max_position_embeddings. Throws mmtune::DataError for an
/// empty text.
PerplexityResult perplexity(model::LlamaDecoderImpl& model, const text::Tokenizer& tokenizer, const std::string& text,
                            int64_t window = 0, const TokenLogprob& on_token = {});

}  // namespace mmtune::eval
