// `mmtune train --dry-run`'s peak-memory estimate against the peak resident set that the same
// config's training run measures (issue #18: within 20 %). The model is tiny/llama-wide (D=512,
// 8 layers) at micro-batch 8 x 256 positions, padded to full length (data.padding=fixed) so that
// the run is the estimate's worst case: its activations, not the process's baseline, dominate.
// The runs set MALLOC_MMAP_THRESHOLD_=131072 so that glibc hands every freed tensor back to the
// system and the resident set is what the tensors need; under glibc's default (a threshold that
// grows, blocks kept on the heap) the same steps peak 1.5x (fp32) and 2.4x (bf16 + int8 +
// checkpointing) higher here: allocator retention, documented in docs/MEMORY.md, not an estimate.
// Three runs: fp32; int8 + activation checkpointing in fp32 (every CPU); the same in bf16 (CPUs with
// LibTorch's bf16 kernels).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include <mmtune/core/cpu_features.h>

#include "test_paths.h"
#include "test_utils.h"

namespace mmtune::testing {
namespace test_memory_estimate {

std::vector<std::string> args(const std::string& out, const std::vector<std::string>& extra) {
  std::vector<std::string> a = {kMmtuneBin,
                                "train",
                                "--config",
                                std::string(kSourceDir) + "/configs/lavin/tiny.yaml",
                                std::string("model.path=") + kTinyDir + "/llama-wide",
                                std::string("vision.path=") + kTinyDir + "/clip-vit",
                                std::string("data.root=") + kSyntheticSqaDir,
                                "output_dir=" + out,
                                "data.padding=fixed",
                                "data.max_length=256",
                                "data.limit=16",
                                "data.num_workers=0",
                                "train.micro_batch_size=8",
                                "train.global_batch_size=8",
                                "train.max_steps=2",
                                "train.save_every=100000"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

struct Estimate {
  double total_gib = -1, baseline_gib = -1;
};

// The dry run's row for the config's own choice: "* <dtype> <quantize> weights trainable
// activations head baseline total" (GiB).
Estimate chosen_row(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("* ", 0) != 0) continue;
    std::istringstream row(line.substr(2));
    std::string dtype, quantize;
    double weights, trainable, activations, head;
    Estimate e;
    row >> dtype >> quantize >> weights >> trainable >> activations >> head >> e.baseline_gib >> e.total_gib;
    return e;
  }
  return {};
}

double measured_peak_gib(const std::string& out) {
  std::ifstream f(out + "/metrics.jsonl");
  std::string line;
  double peak = -1;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("peak_rss_bytes")) peak = std::max(peak, j["peak_rss_bytes"].get<double>() / (1 << 30));
  }
  return peak;
}

void check(const std::vector<std::string>& extra) {
  TempDir dir;
  const std::string out = dir.path() + "/run";
  auto a = args(out, extra);
  a.push_back("--dry-run");
  const std::map<std::string, std::string> env = {{"OMP_NUM_THREADS", "1"}, {"MALLOC_MMAP_THRESHOLD_", "131072"}};
  const auto dry = run_process(a, env);
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  const Estimate e = chosen_row(dry.out);
  ASSERT_GT(e.total_gib, 0) << "no '* ' row in:\n" << dry.out;
  // the check is about the model: at least 40 % of the estimate must be what the model and the batch take
  ASSERT_GT(e.total_gib - e.baseline_gib, 0.4 * e.total_gib) << dry.out;

  const auto run = run_process(args(out, extra), env, std::chrono::seconds(600));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const double peak = measured_peak_gib(out);
  ASSERT_GT(peak, 0) << "metrics.jsonl has no peak_rss_bytes";
  std::cout << "estimated " << e.total_gib << " GiB (baseline " << e.baseline_gib << "), measured peak RSS " << peak
            << " GiB, ratio " << e.total_gib / peak << "\n"
            << dry.out;
  EXPECT_LE(std::abs(e.total_gib - peak), 0.2 * peak) << dry.out;
}

TEST(MemoryEstimate, Fp32StepPeakIsWithinTwentyPercent) { check({}); }

TEST(MemoryEstimate, Bf16Int8CheckpointedStepPeakIsWithinTwentyPercent) {
  // On a CPU without AVX-512 (or with oneDNN capped below it) LibTorch multiplies bf16 matrices with
  // its reference loop: this step took 269 s instead of 33 s and timed out a CI run. The estimate
  // counts bytes, not kernels; where they are missing, the int8 + checkpointing accounting is still
  // checked below in fp32, and the bf16 accounting on every CPU with the kernels.
  if (!cpu_has_fast_bf16_matmul())
    GTEST_SKIP() << "this CPU has no fast bf16 matmul for LibTorch (include/mmtune/core/cpu_features.h)";
  check({"dtype=bf16", "model.quantize=int8", "train.activation_checkpointing=true", "train.micro_batch_size=32",
         "train.global_batch_size=32", "data.limit=32", "train.max_steps=1"});
}

TEST(MemoryEstimate, Int8CheckpointedStepPeakIsWithinTwentyPercent) {
  check({"model.quantize=int8", "train.activation_checkpointing=true", "train.micro_batch_size=32",
         "train.global_batch_size=32", "data.limit=32", "train.max_steps=1"});
}

}  // namespace test_memory_estimate
}  // namespace mmtune::testing
