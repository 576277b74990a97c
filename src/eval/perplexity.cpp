#include <mmtune/core/errors.h>
#include <mmtune/core/signals.h>
#include <mmtune/eval/perplexity.h>

#include <cmath>

namespace mmtune::eval {

double PerplexityResult::perplexity() const { return std::exp(mean_nll()); }

PerplexityResult perplexity(model::LlamaDecoderImpl& model, const text::Tokenizer& tok, const std::string& text,
                            int64_t window, const TokenLogprob& on_token) {
  torch::InferenceMode guard;
  const std::vector<int64_t> ids = tok.encode(text, /*add_bos=*/true, /*add_eos=*/false);
  if (ids.size() < 2) throw DataError("<text>", "nothing to score: the text has no tokens", "pass a non-empty text file");
  if (window <= 0) window = model.config().max_position_embeddings;
  const torch::Tensor all = torch::tensor(ids, torch::kLong).to(model.options().device());
  PerplexityResult r;
  // window w covers tokens [start, start + len); it predicts tokens start+1 .. start+len-1
  for (int64_t start = 0; start + 1 < static_cast<int64_t>(ids.size()); start += window - 1) {
    throw_if_interrupted();
    const int64_t len = std::min<int64_t>(window, ids.size() - start);
    const torch::Tensor chunk = all.narrow(0, start, len).unsqueeze(0);  // [1, len]
    adapters::ForwardContext ctx;
    const torch::Tensor logp = model.forward({chunk, {}, {}, {}}, nullptr, ctx)[0].to(torch::kFloat64).log_softmax(-1);
    const torch::Tensor target = chunk[0].narrow(0, 1, len - 1);
    const torch::Tensor lp = logp.narrow(0, 0, len - 1).gather(-1, target.unsqueeze(-1)).squeeze(-1).cpu();  // [len-1]
    r.nll_sum -= lp.sum().item<double>();
    r.tokens += len - 1;
    if (on_token) {
      const auto* p = lp.data_ptr<double>();
      for (int64_t i = 0; i + 1 < len; ++i) on_token(start + i + 1, ids[start + i + 1], p[i]);
    }
    if (start + len >= static_cast<int64_t>(ids.size())) break;
  }
  return r;
}

}  // namespace mmtune::eval
