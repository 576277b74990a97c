// What src/train/bench.cpp shares with src/train/bench_generate.cpp (not a public header).
#pragma once

#include <string>

#include <torch/torch.h>

#include <mmtune/config/config.h>
#include <mmtune/train/bench.h>
#include <mmtune/train/build_model.h>

namespace mmtune::train::bench_detail {

/// Checks --steps / --warmup, applies --threads, seeds torch from cfg.seed and builds the model
/// (random frozen weights with --random-weights). Throws UsageError for bad counts.
BuiltModel prepare(const config::RunConfig& cfg, const BenchOptions& o);
/// The run's settings, the model's shapes and parameter counts.
BenchReport common_report(const std::string& mode, const config::RunConfig& cfg, const BenchOptions& o,
                          const BuiltModel& built);
/// Peak memory, and the peak TFLOP/s and MFU for r.achieved_tflops.
void finish_report(BenchReport& r, const config::RunConfig& cfg, const BenchOptions& o);
/// CPU time of this process so far (all threads), seconds.
double process_cpu_seconds();
/// Waits for the device's queued work (CUDA), so a measured interval holds its own work only.
void sync(const torch::Device& device);
/// The synthetic-batch spec of `built` for rows of [min_length, max_length] tokens.
SyntheticBatchSpec synthetic_spec(const BuiltModel& built, int64_t batch, int64_t min_length, int64_t max_length,
                                  bool fixed_padding);

}  // namespace mmtune::train::bench_detail
