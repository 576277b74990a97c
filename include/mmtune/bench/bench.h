// Throughput benchmarks behind `mmtune bench train|generate` (issue #10). scripts/bench_reference.py
// is the eager-PyTorch counterpart: same batches, same FLOP count, same JSON keys; BENCHMARKS.md
// has the numbers.
//
// bench train: real optimiser steps of the configured model (runtime::build_model + runtime::MultimodalTask + AdamW,
//   as the Trainer does them, one micro-batch per step): zero_grad, forward (bf16 autocast when
//   train.precision is bf16), loss_sum / supervised tokens (+ aux losses), backward, gradient norm
//   (clipped when train.clip_grad > 0), AdamW step at train's lr. `warmup` untimed steps first.
// bench generate: runtime::generate on a left-padded batch of image prompts, greedy, EOS ignored.
//   Prefill and decode are timed apart: a run with max_new_tokens = 1 is the prefill, a run with N
//   new tokens minus it is N - 1 decode steps.
//
// Synthetic batches (both modes; bench_reference.py builds the same ones). Row i, counted over all
// steps from 0, warm-up included, is an image sample of L_i tokens:
//   L_i   = min_length + hash(i) mod (max_length - min_length + 1),  hash(i) = (2654435761 i + 12345) mod 2^32
//   row   = BOS, 2 prefix tokens, the model's n image slots (pad id 0), text up to L_i;
//           token t of row i (t >= 1, outside the slots) = 3 + (7919 i + 104729 t) mod (V - 3)
//   labels: the second half of the text (an "answer"), kIgnoreIndex elsewhere
//   images: [B, 3, S, S] ~ N(0, 1) from a generator seeded with `seed`
// Padding (data.padding): fixed -> every batch is [B, data.max_length]; dynamic -> [B, max_i L_i].
// Generation prompts are all prompt_length long (no padding).
//
// FLOPs and MFU(4N): full training costs ~6 N FLOPs per token (forward 2N, backward 2N for the
// activation gradients + 2N for the weight gradients). With frozen backbones the weight gradients
// are not computed, so an adapter-tuning token costs ~4N (gradients still flow back through every
// frozen matmul down to the first adapter; LaVIN has adapters in the first ViT block). N counts the
// matmul weights a token passes through:
//   N_llm = layers (D H hd + 2 D Hkv hd + H hd D + 3 D I) + D V        (the embedding lookup is free)
//   N_vit = layers (4 W^2 + 2 W I) + 3 p^2 W                           (patch embedding per patch)
//   train flops/step    = 4 (N_llm (real tokens) + N_vit (image rows) (patches + 1))
//   generate flops/token = 2 N_llm (+ 2 N_vit (patches + 1) per image for the prefill)
// Left out, as in the usual 6N rule: the modality-token row, attention scores (4 layers T D per token forward, ~2% for
// LaVIN-7B at T = 512; dominant for the tiny test models) and the adapters (< 1% of N).
// Padding positions are computed but do not count as tokens: fixed padding shows up as lower MFU.
// MFU = achieved / peak, with the peak from --peak-tflops or, on CUDA, a table of known GPUs (the
// dense bf16 / fp16 / fp32 tensor-core figure for the run's dtype); unknown peak -> no MFU.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <mmtune/config/config.h>
#include <mmtune/data/batch.h>
#include <mmtune/model/clip_vit.h>
#include <mmtune/model/llama_config.h>

namespace mmtune::bench {

struct BenchOptions {
  int64_t steps = 20;           // measured steps (train) or repetitions (generate)
  int64_t warmup = 3;           // untimed steps / generations first
  int64_t batch = 0;            // rows per step; 0 = train.micro_batch_size / eval.batch_size
  int64_t min_length = 0;       // synthetic rows: shortest length; 0 = max(data.max_length / 4, n + 8)
  int64_t prompt_length = 64;   // generate: tokens per prompt (slots included)
  int64_t new_tokens = 0;       // generate: 0 = eval.generation.max_new_tokens
  bool random_weights = false;  // frozen weights from the shapes (runtime::Weights::kRandom), no checkpoint read
  bool use_data = false;        // train on the configured data set (collated up front) instead
  double peak_tflops = 0.0;     // > 0: the peak MFU divides by; 0: the GPU table, else none
  int threads = 0;              // > 0: torch::set_num_threads
};

/// What a run measured; bench_json() writes it (the keys of bench_reference.py).
struct BenchReport {
  std::string mode;  // train | generate
  std::string impl = "mmtune";
  std::string device, dtype, precision, padding, data = "synthetic";
  std::string quantize = "none";  // model.quantize ("int4-g128" with its group)
  double load_s = 0;              // building the model: reading (or drawing) the weights, quantizing
  int threads = 0;
  bool random_weights = false, activation_checkpointing = false;
  std::string llm, vision;  // shapes
  int64_t llm_params = 0, vision_params = 0, trainable_params = 0;
  int64_t batch = 0, max_length = 0, steps = 0, warmup = 0;
  double tokens_per_step = 0, padded_tokens_per_step = 0;  // means over the measured steps
  double tokens_per_s = 0, padded_tokens_per_s = 0, samples_per_s = 0;
  double step_s_p50 = 0, step_s_p90 = 0, step_s_mean = 0, step_s_min = 0;
  /// Process CPU time (all threads) per measured step: with one thread, a measure of the work that
  /// other processes on a shared machine disturb far less than the wall-clock times.
  double cpu_s_per_step = 0;
  double peak_rss_mb = 0;
  std::optional<double> peak_cuda_mb;
  double flops_per_step = 0, achieved_tflops = 0;
  std::optional<double> peak_tflops, mfu;
  double loss_first = 0, loss_last = 0;  // train: the measured steps' first and last losses
  // generate only
  int64_t prompt_length = 0, new_tokens = 0;
  double prefill_tok_per_s = 0, decode_tok_per_s = 0, prefill_s_p50 = 0, decode_s_p50 = 0;
  /// Bytes of weights one decode step reads (every LLM weight once as stored, one embedding row
  /// per sequence, the whole table if tied): the memory-bandwidth bound of decoding is
  /// batch x bandwidth / this.
  double decode_weight_bytes = 0;
};

/// The report as one JSON object (2-space indented); absent optionals are null.
std::string bench_json(const BenchReport& r);

/// Trains `options.steps` steps after the warm-up and reports. Throws mmtune::Error with a hint
/// (no trainable parameters, a shape or checkpoint missing, the data set empty).
BenchReport bench_train(const config::RunConfig& cfg, const BenchOptions& options);

/// Times batched generation (prefill and decode apart). Throws mmtune::Error / UsageError.
BenchReport bench_generate(const config::RunConfig& cfg, const BenchOptions& options);

// ---- the pieces, public for the tests and bench_reference.py's documentation ----

/// hash(i) and L_i of the file comment.
int64_t synthetic_length(int64_t row, int64_t min_length, int64_t max_length);
/// The shortest synthetic row (and generation prompt): BOS, 2 prefix tokens, the image slots and
/// 2 text tokens.
inline int64_t shortest_synthetic_row(int64_t image_tokens) { return image_tokens + 5; }

struct SyntheticBatchSpec {
  int64_t batch = 4, min_length = 64, max_length = 256;
  bool fixed_padding = false;
  int64_t vocab = 32000, image_tokens = 6, image_size = 224;  // image_tokens 0: text-only rows
};
/// Synthetic training batch `step` (rows step * batch ... ) in the data::Batch layout; `gen`
/// draws the images.
data::Batch synthetic_batch(const SyntheticBatchSpec& spec, int64_t step, torch::Generator& gen);

/// N_llm and N_vit of the file comment.
double llm_matmul_params(const model::LlamaConfig& c);
double vit_matmul_params(const model::ClipVisionConfig& c);

/// Dense peak TFLOP/s of a known GPU (by name, e.g. "NVIDIA H100 80GB HBM3") for `dtype`
/// (fp32 | bf16 | fp16); nullopt if the name is not in the table.
std::optional<double> gpu_peak_tflops(const std::string& gpu_name, const std::string& dtype);

/// Nearest-rank percentile (q in [0, 1]) of `v` (copied and sorted); 0 for an empty vector.
double percentile(std::vector<double> v, double q);

}  // namespace mmtune::bench
