// cpu_has_fast_bf16_matmul from a flags line: LibTorch's own condition (AVX-512 BW + VL + DQ) and
// ONEDNN_MAX_CPU_ISA's cap, as documented in include/mmtune/core/cpu_features.h.
#include <gtest/gtest.h>

#include <mmtune/core/cpu_features.h>

namespace mmtune {
namespace test_cpu_features {

// excerpts of real flags lines: an AMD EPYC 9004 (Zen 4), an AMD EPYC 7003 (Zen 3, no AVX-512),
// an Intel Xeon Cascade Lake (AVX-512 without BF16)
constexpr const char* kZen4 = "fpu sse2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512vnni";
constexpr const char* kZen3 = "fpu sse2 avx avx2 fma bmi2 vaes vpclmulqdq";
constexpr const char* kCascadeLake = "fpu sse2 avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni";

TEST(CpuFeatures, Bf16MatmulIsFastWithAvx512BwVlDq) {
  EXPECT_TRUE(cpu_has_fast_bf16_matmul(kZen4, nullptr));
  EXPECT_TRUE(cpu_has_fast_bf16_matmul(kCascadeLake, nullptr));
  EXPECT_FALSE(cpu_has_fast_bf16_matmul(kZen3, nullptr));
  EXPECT_FALSE(cpu_has_fast_bf16_matmul("avx512f avx512bw avx512vl", nullptr));  // no DQ
  EXPECT_FALSE(cpu_has_fast_bf16_matmul("", nullptr));
}

TEST(CpuFeatures, OnednnCappedBelowAvx512IsSlow) {
  EXPECT_FALSE(cpu_has_fast_bf16_matmul(kZen4, "AVX2"));
  EXPECT_FALSE(cpu_has_fast_bf16_matmul(kZen4, "avx2_vnni"));
  EXPECT_FALSE(cpu_has_fast_bf16_matmul(kZen4, "SSE41"));
  EXPECT_FALSE(cpu_has_fast_bf16_matmul(kZen4, "AVX"));
  EXPECT_TRUE(cpu_has_fast_bf16_matmul(kZen4, "AVX512_CORE"));
  EXPECT_TRUE(cpu_has_fast_bf16_matmul(kZen4, "AVX512_CORE_BF16"));
  EXPECT_TRUE(cpu_has_fast_bf16_matmul(kZen4, "ALL"));
  EXPECT_TRUE(cpu_has_fast_bf16_matmul(kZen4, ""));
}

}  // namespace test_cpu_features
}  // namespace mmtune
