// What src/bench/bench.cpp shares with src/bench/bench_generate.cpp (not a public header).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include <mmtune/config/config.h>
#include <mmtune/bench/bench.h>
#include <mmtune/runtime/build_model.h>

namespace mmtune::bench::detail {

/// Checks --steps / --warmup, applies --threads, seeds torch from cfg.seed and builds the model
/// (random frozen weights with --random-weights). Throws UsageError for bad counts.
/// Builds the model (loaded or random); `seconds` gets the time that took (loading, quantizing).
runtime::BuiltModel prepare(const config::RunConfig& cfg, const BenchOptions& o, double& seconds);
/// The run's settings, the model's shapes and parameter counts.
BenchReport common_report(const std::string& mode, const config::RunConfig& cfg, const BenchOptions& o,
                          const runtime::BuiltModel& built);
/// The timing fields of `r` from the measured steps (or generations): step p50 / p90 / mean / min,
/// CPU seconds per step, and per step and per second (over the sum of the steps, not the median)
/// the `tokens` and `padded` totals and r.batch samples per step.
void fill_timing(BenchReport& r, const std::vector<double>& times, double cpu_seconds, double tokens, double padded);
/// N_vit (patches + 1): the matmul parameters one image passes through; 0 without a vision tower.
double vit_params_per_image(const runtime::BuiltModel& built);
/// Bytes of weights one decode step of `batch` sequences reads: every LLM weight once as stored
/// (bf16 / fp32, or int8 / int4 codes plus their scales and zeros), adapters included, and one
/// embedding row per sequence (and the whole table when the LM head is tied to it). The KV cache
/// and activations are left out. Decoding one token is bound by this over the memory bandwidth
/// (scripts/bench_7b.sh divides).
double llm_decode_weight_bytes(const runtime::BuiltModel& built, int64_t batch);
/// Peak memory, and the peak TFLOP/s and MFU for r.achieved_tflops.
void finish_report(BenchReport& r, const config::RunConfig& cfg, const BenchOptions& o);
/// CPU time of this process so far (all threads), seconds.
double process_cpu_seconds();
/// Waits for the device's queued work (CUDA), so a measured interval holds its own work only.
void sync(const torch::Device& device);
/// The synthetic-batch spec of `built` for rows of [min_length, max_length] tokens.
SyntheticBatchSpec synthetic_spec(const runtime::BuiltModel& built, int64_t batch, int64_t min_length, int64_t max_length,
                                  bool fixed_padding);

}  // namespace mmtune::bench::detail
