// The pure pieces of the benchmark (bench/bench.h): the synthetic batches that
// scripts/bench_reference.py rebuilds, the FLOP count, the GPU peak table, percentiles.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <mmtune/model/sizes.h>
#include <mmtune/bench/bench.h>

namespace mmtune::bench {
namespace test_bench {

TEST(Bench, SyntheticLengthsFollowTheDocumentedHash) {
  // L_i = lo + ((2654435761 i + 12345) mod 2^32) mod (hi - lo + 1); the Python side computes the same
  EXPECT_EQ(synthetic_length(0, 64, 256), 64 + 12345 % 193);
  EXPECT_EQ(synthetic_length(1, 64, 256), 64 + ((2654435761ULL + 12345ULL) % (1ULL << 32)) % 193);
  for (int64_t i = 0; i < 100; ++i) {
    const int64_t L = synthetic_length(i, 10, 20);
    EXPECT_GE(L, 10);
    EXPECT_LE(L, 20);
  }
  EXPECT_EQ(synthetic_length(7, 32, 32), 32);
}

TEST(Bench, SyntheticBatchHasTheDataLayout) {
  SyntheticBatchSpec s;
  s.batch = 3;
  s.min_length = 20;
  s.max_length = 40;
  s.vocab = 100;
  s.image_tokens = 4;
  s.image_size = 8;
  torch::Generator gen = at::detail::createCPUGenerator(0);
  const data::Batch b = synthetic_batch(s, 2, gen);
  ASSERT_EQ(b.size(), 3);
  int64_t longest = 0, supervised = 0;
  for (int64_t r = 0; r < 3; ++r) {
    const int64_t L = synthetic_length(2 * 3 + r, 20, 40);
    longest = std::max(longest, L);
    EXPECT_EQ(b.attention_mask[r].sum().item<int64_t>(), L);
    EXPECT_EQ(b.tokens[r][0].item<int64_t>(), 1) << "BOS";
    EXPECT_EQ(b.image_slots[r].sum().item<int64_t>(), 4);
    EXPECT_TRUE(b.image_slots[r].narrow(0, 3, 4).all().item<bool>()) << "slots after BOS and 2 prefix tokens";
    EXPECT_EQ(b.tokens[r].narrow(0, 3, 4).sum().item<int64_t>(), 0) << "slots hold the pad id";
    const int64_t t = 10;  // a text position
    EXPECT_EQ(b.tokens[r][t].item<int64_t>(), 3 + (7919 * (6 + r) + 104729 * t) % 97);
    const int64_t answer = 7 + (L - 7) / 2;
    EXPECT_EQ(b.labels[r].ne(data::kIgnoreIndex).sum().item<int64_t>(), L - answer) << "second half of the text";
    supervised += L - answer;
  }
  EXPECT_EQ(b.tokens.size(1), longest) << "dynamic padding: the batch's longest row";
  EXPECT_EQ(b.supervised_tokens, supervised);
  EXPECT_EQ(b.images.sizes(), (std::vector<int64_t>{3, 3, 8, 8}));
  EXPECT_EQ(b.has_image.sum().item<int64_t>(), 3);

  s.fixed_padding = true;
  EXPECT_EQ(synthetic_batch(s, 2, gen).tokens.size(1), 40) << "fixed padding: max_length";
}

TEST(Bench, MatmulParametersOfLlama7bAndVitL14) {
  // 32 x (4 x 4096^2 + 3 x 4096 x 11008) + 4096 x 32000 = 6.607e9 (the 6.74e9 total minus embeddings and norms)
  EXPECT_DOUBLE_EQ(llm_matmul_params(model::llama_7b()), 32.0 * (4 * 4096.0 * 4096 + 3 * 4096.0 * 11008) + 4096.0 * 32000);
  EXPECT_DOUBLE_EQ(vit_matmul_params(model::clip_vit_l14()), 24.0 * (4 * 1024.0 * 1024 + 2 * 1024.0 * 4096) + 3 * 14 * 14 * 1024.0);
}

TEST(Bench, GpuPeakTableAndPercentiles) {
  EXPECT_EQ(gpu_peak_tflops("NVIDIA H100 80GB HBM3", "bf16"), 989.4);
  EXPECT_EQ(gpu_peak_tflops("NVIDIA H100 PCIe", "bf16"), 756.0);
  EXPECT_EQ(gpu_peak_tflops("NVIDIA A100-SXM4-80GB", "fp32"), 19.5);
  EXPECT_EQ(gpu_peak_tflops("NVIDIA H200", "bf16"), 989.4);
  EXPECT_FALSE(gpu_peak_tflops("Some Accelerator", "bf16").has_value());
  EXPECT_EQ(percentile({3, 1, 2, 4}, 0.5), 2);
  EXPECT_EQ(percentile({3, 1, 2, 4}, 0.9), 4);
  EXPECT_EQ(percentile({5}, 0.9), 5);
  EXPECT_EQ(percentile({}, 0.5), 0);
}

}  // namespace test_bench
}  // namespace mmtune::bench
