// `mmtune bench` smoke runs on the tiny checkpoints (issue #10): a few steps, the JSON report's
// keys and their consistency. Never a timed assertion: speed lives in BENCHMARKS.md
// (scripts/bench_compare.sh), not in ctest.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "test_paths.h"
#include "test_utils.h"

namespace mmtune::testing {
namespace test_bench_cli {

ProcessResult bench(const std::vector<std::string>& extra) {
  std::vector<std::string> args{kMmtuneBin,
                                "bench",
                                extra.front(),
                                "--config",
                                std::string(kSourceDir) + "/configs/lavin/tiny.yaml",
                                std::string("model.path=") + kTinyDir + "/llama-gqa",
                                std::string("vision.path=") + kTinyDir + "/clip-vit"};
  args.insert(args.end(), extra.begin() + 1, extra.end());
  return run_process(args, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
}

void expect_common_keys(const nlohmann::json& j) {
  for (const char* key : {"mode", "impl", "device", "dtype", "precision", "threads", "llm", "vision", "llm_params",
                          "vision_params", "trainable_params", "random_weights", "padding", "batch", "max_length",
                          "steps", "warmup", "tokens_per_step", "padded_tokens_per_step", "tokens_per_s",
                          "padded_tokens_per_s", "samples_per_s", "step_s_p50", "step_s_p90", "step_s_mean",
                          "step_s_min", "cpu_s_per_step", "peak_rss_mb", "peak_cuda_mb", "flops_per_step",
                          "achieved_tflops", "peak_tflops", "mfu"}) {
    EXPECT_TRUE(j.contains(key)) << key << " missing in " << j.dump();
  }
  EXPECT_EQ(j["impl"], "mmtune");
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0.0);
  EXPECT_GT(j["samples_per_s"].get<double>(), 0.0);
  EXPECT_LE(j["step_s_min"].get<double>(), j["step_s_p50"].get<double>());
  EXPECT_LE(j["step_s_p50"].get<double>(), j["step_s_p90"].get<double>());
  EXPECT_LE(j["tokens_per_step"].get<double>(), j["padded_tokens_per_step"].get<double>());
  EXPECT_GT(j["peak_rss_mb"].get<double>(), 0.0);
  EXPECT_TRUE(j["peak_cuda_mb"].is_null()) << "CPU run";
  EXPECT_GT(j["flops_per_step"].get<double>(), 0.0);
  EXPECT_GT(j["trainable_params"].get<int64_t>(), 0);
}

TEST(BenchCli, TrainSmokeRunWritesTheReport) {
  TempDir dir;
  const std::string out = dir.path() + "/bench.json";
  const auto r = bench({"train", "--steps", "2", "--warmup", "1", "--json", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_text(out));
  EXPECT_EQ(nlohmann::json::parse(r.out), j) << "stdout and --json hold the same report";
  expect_common_keys(j);
  EXPECT_EQ(j["mode"], "train");
  EXPECT_EQ(j["steps"], 2);
  EXPECT_EQ(j["batch"], 4) << "train.micro_batch_size of the tiny config";
  EXPECT_EQ(j["padding"], "dynamic");
  EXPECT_TRUE(j["mfu"].is_null()) << "no peak on a CPU without --peak-tflops";
  EXPECT_TRUE(std::isfinite(j["loss_first"].get<double>()));
  EXPECT_TRUE(std::isfinite(j["loss_last"].get<double>()));
}

TEST(BenchCli, RandomWeightsFixedPaddingAndAGivenPeakGiveMfu) {
  const auto r = bench({"train", "--steps", "2", "--warmup", "0", "--random-weights", "--batch", "2",
                        "--peak-tflops", "2", "data.padding=fixed", "data.max_length=64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  expect_common_keys(j);
  EXPECT_TRUE(j["random_weights"].get<bool>());
  EXPECT_EQ(j["padded_tokens_per_step"].get<double>(), 2.0 * 64) << "fixed padding: every row is max_length";
  ASSERT_FALSE(j["mfu"].is_null());
  // one double division of the reported value (JSON keeps 17 digits): double rounding only
  EXPECT_NEAR(j["mfu"].get<double>(), j["achieved_tflops"].get<double>() / 2.0, 1e-12);
}

TEST(BenchCli, GenerateSmokeRunTimesPrefillAndDecode) {
  const auto r = bench({"generate", "--steps", "1", "--warmup", "0", "--batch", "2", "--prompt-length", "16",
                        "--new-tokens", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  expect_common_keys(j);
  EXPECT_EQ(j["mode"], "generate");
  EXPECT_EQ(j["tokens_per_step"].get<double>(), 2.0 * 3);
  for (const char* key : {"prefill_s_p50", "decode_s_p50", "prefill_tok_per_s", "decode_tok_per_s"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_GT(j["prefill_tok_per_s"].get<double>(), 0.0);
}

TEST(BenchCli, GenerateReportsTheBytesADecodeStepReads) {
  // the tiny llama-gqa (its config.json): D 64, 3 layers, 4 query + 2 KV heads of 16, F 176, V 400,
  // untied. Linear weights: 3 x (q 64x64 + k, v 2 x 32x64 + o 64x64 + gate, up, down 3 x 176x64)
  // + the LM head 400x64 = 163840 entries; their output rows 3 x (64 + 32 + 32 + 64 + 176 + 176 + 64)
  // + 400 = 2224; RMSNorm weights: 2 per layer + the final one = 7 x 64.
  const double linear = 3 * (64 * 64 + 2 * 32 * 64 + 64 * 64 + 3 * 176 * 64) + 400 * 64, rows = 3 * 608 + 400;
  const double norms = 7 * 64, batch = 2;
  auto run = [&](const char* quantize) {
    const auto r = bench({"generate", "--steps", "1", "--warmup", "0", "--batch", "2", "--prompt-length", "16",
                          "--new-tokens", "2", "--quantize", quantize});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const auto fp32 = run("none"), int8 = run("int8");
  const double none_bytes = fp32["decode_weight_bytes"].get<double>();
  // fp32: every weight 4 bytes, one embedding row per sequence; the adapters inside the LLM on top
  // (fewer than all the trainable parameters, which include the vision side's)
  const double frozen = 4 * (linear + norms + batch * 64);
  EXPECT_GE(none_bytes, frozen);
  EXPECT_LE(none_bytes, frozen + 4 * fp32["trainable_params"].get<double>());
  // int8: each Linear weight one byte per entry plus an fp32 scale per output row; all else alike
  EXPECT_EQ(none_bytes - int8["decode_weight_bytes"].get<double>(), 4 * linear - (linear + 4 * rows));

  // llama-mha-tied: D 64, 2 layers, 4 + 4 heads of 16, F 160, V 400, the LM head is the embedding
  // table (read whole for the logits, never quantized). Linear weights 2 x (4 x 64x64 + 3 x 160x64)
  // = 94208 entries, output rows 2 x (4 x 64 + 160 + 160 + 64) = 1280, norms 5 x 64.
  const std::string tied = std::string("model.path=") + kTinyDir + "/llama-mha-tied";
  auto run_tied = [&](const char* quantize) {
    const auto r = bench({"generate", "--steps", "1", "--warmup", "0", "--batch", "2", "--prompt-length", "16",
                          "--new-tokens", "2", "--quantize", quantize, tied});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const auto tied32 = run_tied("none"), tied8 = run_tied("int8");
  const double tied_linear = 2 * (4 * 64 * 64 + 3 * 160 * 64), tied_rows = 2 * (4 * 64 + 160 + 160 + 64);
  const double tied_bytes = tied32["decode_weight_bytes"].get<double>();
  const double tied_frozen = 4 * (tied_linear + 5 * 64 + 400 * 64 + batch * 64);
  EXPECT_GE(tied_bytes, tied_frozen) << "the whole table for the logits";
  EXPECT_LE(tied_bytes, tied_frozen + 4 * tied32["trainable_params"].get<double>());
  EXPECT_EQ(tied_bytes - tied8["decode_weight_bytes"].get<double>(), 4 * tied_linear - (tied_linear + 4 * tied_rows));
}

TEST(BenchCli, BadArgumentsExitTwo) {
  EXPECT_EQ(bench({"train", "--steps", "0"}).exit_code, 2);
  EXPECT_EQ(bench({"train", "--steps", "1", "--min-length", "3"}).exit_code, 2) << "rows too short for the image slots";
  const auto r = bench({"generate", "--steps", "1", "--prompt-length", "3"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--prompt-length 3 cannot hold"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pass --prompt-length"), std::string::npos) << r.err << " (generate names its own option)";
}

}  // namespace test_bench_cli
}  // namespace mmtune::testing
