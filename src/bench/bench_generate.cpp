// `mmtune bench generate` (include/mmtune/bench/bench.h): batched greedy generation, prefill and
// decode timed apart.
#include <mmtune/core/errors.h>
#include <mmtune/core/strings.h>
#include <mmtune/runtime/generator.h>
#include <mmtune/text/tokenizer.h>
#include <mmtune/bench/bench.h>
#include <mmtune/runtime/lm_loss.h>

#include <chrono>

#include <ATen/CPUGeneratorImpl.h>

#include "bench_detail.h"

namespace mmtune::bench {
namespace {

using namespace detail;

// Ids without text: the benchmark times the model, not detokenisation (and needs no tokenizer file,
// so a --random-weights shape runs without a download).
class IdTokenizer : public text::Tokenizer {
 public:
  explicit IdTokenizer(const model::LlamaConfig& c) : vocab_(c.vocab_size), bos_(c.bos_token_id), eos_(c.eos_token_id) {}
  std::vector<int64_t> encode(std::string_view, bool, bool) const override {
    throw Error("the benchmark's tokenizer does not encode text");
  }
  std::string decode(const std::vector<int64_t>&) const override { return {}; }
  bool skipped_by_decode(int64_t) const override { return true; }
  std::string id_to_piece(int64_t id) const override { return std::to_string(id); }
  int64_t vocab_size() const override { return vocab_; }
  int64_t bos_id() const override { return bos_; }
  int64_t eos_id() const override { return eos_; }
  int64_t pad_id() const override { return 0; }

 private:
  int64_t vocab_, bos_, eos_;
};

}  // namespace

BenchReport bench_generate(const config::RunConfig& cfg, const BenchOptions& o) {
  double load_s = 0;
  runtime::BuiltModel built = prepare(cfg, o, load_s);
  built.model->eval();
  model::pack_for_inference(*built.model, built.model->llm().options().dtype().toScalarType());  // LLM and ViT
  const torch::Device device(cfg.device);
  const int64_t B = o.batch > 0 ? o.batch : cfg.eval.batch_size;
  const int64_t P = o.prompt_length, N = o.new_tokens > 0 ? o.new_tokens : cfg.eval.generation.max_new_tokens;

  // one batch of image prompts of exactly P tokens: nothing to pad, every row ends at the last column
  // (synthetic_spec checks the same with train's option in its hint)
  const int64_t slots = built.model->has_vision() ? built.model->visual_tokens() : 0;
  if (const int64_t shortest = shortest_synthetic_row(slots); P < shortest)
    throw UsageError(cat("--prompt-length ", P, " cannot hold BOS, 2 prefix tokens, this model's ", slots,
                         " image slots and 2 text tokens"),
                     cat("pass --prompt-length ", shortest, " or more"));
  const SyntheticBatchSpec spec = synthetic_spec(built, B, P, P, /*fixed_padding=*/false);
  torch::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(cfg.seed));
  const model::MultimodalInput prompts = runtime::model_input(synthetic_batch(spec, 0, gen), device);
  const IdTokenizer tok(built.model->llm().config());
  runtime::SamplingOptions sampling;
  sampling.temperature = 0.0;
  sampling.stop_at_eos = false;
  auto run = [&](int64_t new_tokens) {
    sampling.max_new_tokens = new_tokens;
    const auto t0 = std::chrono::steady_clock::now();
    runtime::generate(*built.model, tok, prompts, sampling);
    sync(device);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int64_t i = 0; i < o.warmup; ++i) run(N);
  std::vector<double> prefill, full;
  double cpu_seconds = 0;  // of the full generations
  for (int64_t i = 0; i < o.steps; ++i) {
    prefill.push_back(run(1));
    const double cpu_start = process_cpu_seconds();
    full.push_back(run(N));
    cpu_seconds += process_cpu_seconds() - cpu_start;
  }

  BenchReport r = common_report("generate", cfg, o, built);
  r.load_s = load_s;
  r.batch = B;
  r.prompt_length = P;
  r.new_tokens = N;
  r.padding = "none";
  r.precision = cfg.dtype;  // generation runs without autocast
  r.max_length = P + N;
  const double n = static_cast<double>(full.size());
  fill_timing(r, full, cpu_seconds, static_cast<double>(B * N) * n, static_cast<double>(B * (P + N)) * n);
  r.prefill_s_p50 = percentile(prefill, 0.5);
  r.decode_s_p50 = std::max(r.step_s_p50 - r.prefill_s_p50, 0.0);
  r.prefill_tok_per_s = static_cast<double>(B * P) / r.prefill_s_p50;
  r.decode_tok_per_s = N > 1 && r.decode_s_p50 > 0 ? static_cast<double>(B * (N - 1)) / r.decode_s_p50 : 0.0;
  r.decode_weight_bytes = llm_decode_weight_bytes(built, B);
  const double vit = spec.image_tokens > 0 ? vit_params_per_image(built) : 0.0;
  r.flops_per_step = 2 * (llm_matmul_params(built.model->llm().config()) * static_cast<double>(B * (P + N)) +
                          vit * static_cast<double>(B));
  r.achieved_tflops = r.flops_per_step / r.step_s_mean / 1e12;
  finish_report(r, cfg, o);
  return r;
}

}  // namespace mmtune::bench
