// Weight-only int8 / int4 quantization (model/quantize.h, docs/QUANTIZATION.md):
// - the formats on hand-derived values;
// - the whole quantized decoder against scripts/reference/quant_reference.py, which quantizes
//   transformers' LlamaForCausalLM from the format's text and runs it on the dequantized weights:
//   the stored codes must be bit for bit the reference's, and the logits within the usual
//   noise-derived fp32 bound (tests/numerics.h; the kernels run in fp32 here) and the issue's
//   1e-4 x the logit scale;
// - the gradient reaches the input (QLoRA-style), never the frozen codes;
// - bad shapes are refused with the tensor's name before anything is allocated.
#include <gtest/gtest.h>

#include <mmtune/core/errors.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/model/quantize.h>
#include <mmtune/model/weights.h>

#include <ATen/ops/_convert_weight_to_int4pack_for_cpu.h>

#include <cmath>
#include <cstdio>

#include "numerics.h"
#include "reference_codes.h"
#include "test_utils.h"

namespace mmtune::model {
namespace test_quantize {

using mmtune::testing::TempDir;

TEST(Quantize, Int8IsPerRowSymmetricWithRoundHalfToEven) {
  // row max 1 -> s = 1/127: 1 -> 127, -0.5 -> -63.5 -> -64 (half to even), 0.25 -> 31.75 -> 32
  const torch::Tensor w = torch::tensor({{1.0f, -0.5f, 0.25f}, {0.0f, 0.0f, 0.0f}});
  const QuantizedWeight q = quantize_weight(w, "int8", 0);
  EXPECT_TRUE(torch::equal(q.qweight, torch::tensor({{127, -64, 32}, {0, 0, 0}}, torch::kInt8)));
  EXPECT_FLOAT_EQ(q.scales[0].item<float>(), 1.0f / 127);
  EXPECT_FLOAT_EQ(q.scales[1].item<float>(), 1.0f) << "an all-zero row keeps scale 1";
  const torch::Tensor back = dequantize_weight(q, torch::kFloat64);
  EXPECT_NEAR(back[0][1].item<double>(), -64.0 * (1.0f / 127), 1e-12);
}

TEST(Quantize, Int4GroupsHaveABf16ScaleAndZeroAndPackTwoPerByte) {
  // one group of 32: w = 0, 1, ..., 31. s = bf16(31 / 15 = 2.0667) = 2.0625, z = bf16(0 + 8 s) = 16.5,
  // lowest = z - 8 s = 0, q = round(w / 2.0625): w = 1 -> 0.48 -> 0, w = 2 -> 0.97 -> 1, w = 31 -> 15.03 -> 15
  const torch::Tensor w = torch::arange(32, torch::kFloat32).unsqueeze(0);  // [1, 32]
  const QuantizedWeight q = quantize_weight(w, "int4", 32);
  ASSERT_EQ(q.qweight.sizes(), (std::vector<int64_t>{1, 16}));
  ASSERT_EQ(q.scales.sizes(), (std::vector<int64_t>{1, 1, 2}));
  EXPECT_EQ(q.scales.scalar_type(), torch::kBFloat16);
  EXPECT_FLOAT_EQ(q.scales[0][0][0].item<float>(), 2.0625f);
  EXPECT_FLOAT_EQ(q.scales[0][0][1].item<float>(), 16.5f);
  // byte 0 = (q(0) << 4) | q(1) = (0 << 4) | 0; byte 1 = (q(2) << 4) | q(3) = (1 << 4) | 1 (3 / 2.0625 = 1.45)
  EXPECT_EQ(q.qweight[0][0].item<int>(), 0x00);
  EXPECT_EQ(q.qweight[0][1].item<int>(), 0x11);
  EXPECT_EQ(q.qweight[0][15].item<int>(), 0xFF);  // 30 / 2.0625 = 14.55 -> 15, 31 / 2.0625 = 15.03 -> 15
  const torch::Tensor back = dequantize_weight(q, torch::kFloat64);
  EXPECT_DOUBLE_EQ(back[0][3].item<double>(), (1 - 8) * 2.0625 + 16.5);
}

TEST(Quantize, RowChunksGiveTheCodesOfTheWholeMatrix) {
  // quantize_weight works on ~4M values at a time (k = 65536: 64 rows per chunk, 3 chunks and a
  // partial one here); the codes must be those of the formulas above applied to the whole matrix
  torch::manual_seed(11);
  const int64_t n = 200, k = 65536, g = 128;
  const torch::Tensor w = torch::randn({n, k}).mul_(0.02).to(torch::kBFloat16);  // a checkpoint's bf16
  const torch::Tensor wf = w.to(torch::kFloat32);
  {
    const QuantizedWeight q = quantize_weight(w, "int8", 0);
    const torch::Tensor s = wf.abs().amax(1) / 127.0;
    EXPECT_TRUE(torch::equal(q.scales, s));
    EXPECT_TRUE(torch::equal(q.qweight, (wf / s.unsqueeze(1)).round().clamp(-128, 127).to(torch::kInt8)));
  }
  const QuantizedWeight q = quantize_weight(w, "int4", g);
  const torch::Tensor grp = wf.view({n, k / g, g});
  const torch::Tensor mx = grp.amax(-1), mn = grp.amin(-1);
  const torch::Tensor sc = ((mx - mn).clamp_min(1e-6) / 15.0).to(torch::kBFloat16).to(torch::kFloat32);
  const torch::Tensor z = (mn + sc * 8.0).to(torch::kBFloat16).to(torch::kFloat32);
  const torch::Tensor v = ((grp - (z - sc * 8.0).unsqueeze(-1)) / sc.unsqueeze(-1)).round().clamp(0, 15).view({n, k});
  const torch::Tensor packed = (v.slice(1, 0, k, 2) * 16 + v.slice(1, 1, k, 2)).to(torch::kUInt8);
  EXPECT_TRUE(torch::equal(q.qweight, packed));
  EXPECT_TRUE(torch::equal(q.scales, torch::stack({sc, z}, -1).transpose(0, 1).to(torch::kBFloat16)));
}

TEST(Quantize, Int4CpuPackInRowChunksIsTheWholePack) {
  // pack_weight builds the CPU kernel's layout 1024 rows at a time; the kernel's own packing of the
  // whole matrix must give the same bytes (the numerics label reruns this with the portable kernels)
  torch::manual_seed(5);
  const int64_t n = 2096, k = 512;  // 3 chunks, the last one 48 rows
  QuantizedWeight q;
  q.mode = "int4";
  q.group = 128;
  q.qweight = torch::randint(0, 256, {n, k / 2}, torch::kInt32).to(torch::kUInt8);
  q.scales = torch::randn({k / 128, n, 2}).to(torch::kBFloat16);
  const PackedWeight p = pack_weight(q, torch::kBFloat16, torch::kCPU);
  const torch::Tensor values =
      torch::stack({torch::bitwise_right_shift(q.qweight, 4), torch::bitwise_and(q.qweight, 15)}, -1).view({n, k});
  const torch::Tensor whole = at::_convert_weight_to_int4pack_for_cpu(values.to(torch::kInt32), 1);
  ASSERT_EQ(p.weight.sizes(), whole.sizes());
  EXPECT_TRUE(torch::equal(p.weight, whole));
}

TEST(Quantize, KernelsMatchTheDequantizedWeightOnCpu) {
  // LibTorch's int8 / int4 CPU kernels against x W'^T with the dequantized W', in float64
  torch::manual_seed(3);
  const torch::Tensor w = torch::randn({40, 64}), x = torch::randn({5, 64});  // N = 40: padded to 48 for int4
  for (const std::string mode : {"int8", "int4"}) {
    const QuantizedWeight q = quantize_weight(w, mode, 32);
    const PackedWeight p = pack_weight(q, torch::kFloat32, torch::kCPU);
    const torch::Tensor y = quantized_linear(x, q, p);
    const torch::Tensor y64 = x.to(torch::kFloat64).matmul(dequantize_weight(q, torch::kFloat64).t());
    // fp32 rounding of a 64-term dot product: a few ulp of the largest partial sums
    const double scale = testing::max_abs(y64);
    EXPECT_LE(testing::max_abs_diff(y, y64), 64 * 1.2e-7 * scale) << mode;
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{5, 40}));
  }
}

TEST(Quantize, GradientReachesTheInputThroughTheDequantizedWeightOnly) {
  torch::manual_seed(4);
  for (const std::string mode : {"int8", "int4"}) {
    Projection proj(64, 48, false, torch::kFloat32, mode, mode == "int4" ? 32 : 0);
    proj->set_quantized(quantize_weight(torch::randn({48, 64}), mode, 32));
    const torch::Tensor x = torch::randn({3, 7, 64}, torch::requires_grad());
    const torch::Tensor gy = torch::randn({3, 7, 48});
    proj->forward(x).backward(gy);
    // the same backward as a dense Linear over the dequantized weight: gy @ W', the same kernel
    const torch::Tensor w = dequantize_weight(proj->quantized_weight(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(x.grad(), gy.matmul(w))) << mode;
    for (const auto& b : proj->buffers()) EXPECT_FALSE(b.grad().defined()) << mode;
  }
}

TEST(Quantize, AGroupThatDoesNotDivideTheInputsNamesTheTensorAndTheFix) {
  LlamaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_layers = 1;
  c.num_heads = c.num_kv_heads = 4;
  c.head_dim = 16;
  c.quantization.mode = "int4";
  c.quantization.group = 64;
  try {
    LlamaDecoder model(c, torch::TensorOptions().device(torch::kMeta));
    FAIL() << "no error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.0.mlp.down_proj has 176 inputs"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("quant_fallback=int8"), std::string::npos) << e.hint();
  }
  c.quantization.fallback = "int8";
  LlamaDecoder model(c, torch::TensorOptions().device(torch::kMeta));
  EXPECT_EQ(find_projection(model->block(0), "mlp.down_proj")->quantized_weight().mode, "int8");
  EXPECT_EQ(find_projection(model->block(0), "mlp.up_proj")->quantized_weight().mode, "int4");
}

// int4 on a GPU below compute capability 8.0 (a T4, a V100): LibTorch's tinygemm kernel is not built
// for it; the run is refused before any weight is read, naming the key and the fix.
TEST(Quantize, Int4OnAGpuWithoutTheKernelIsRefusedNamingTheKey) {
  const torch::Device gpu("cuda:0");
  try {
    check_int4_cuda_capability(gpu, 7, 5, "vision.quantize");
    ADD_FAILURE() << "compute capability 7.5 accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("compute capability 7.5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("vision.quantize=int4"), std::string::npos) << e.what();
    EXPECT_NE(e.hint().find("vision.quantize=int8"), std::string::npos) << e.hint();
  }
  EXPECT_NO_THROW(check_int4_cuda_capability(gpu, 8, 0, "model.quantize"));  // A100
  EXPECT_NO_THROW(check_int4_cuda_capability(gpu, 9, 0, "model.quantize"));  // H100 / H200
  EXPECT_NO_THROW(check_int4_device(torch::Device(torch::kCPU), "model.quantize"));
  EXPECT_THROW(check_int4_device(torch::Device(torch::kXPU), "model.quantize"), UsageError);
}

// The CUDA path (gpu label; skipped without a GPU): tinygemm's int4 kernel (a few rows) and cuBLAS
// on the weight dequantized to bf16 (int8, and int4 beyond a few rows) against the dequantized
// weight in float64 on the CPU, for the bf16-rounded input. Bound, per output, from the two
// roundings these paths may do (fp32 accumulation is far below them): the weight to bf16, at most
// 2^-9 |W| each, so 2^-9 sum_k |x_k| |W_k|; and the output to bf16, 2^-9 |y|.
TEST(QuantizeGpu, CudaKernelsMatchTheDequantizedWeight) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_NO_THROW(check_int4_device(torch::Device("cuda:0"), "model.quantize")) << "the lent GPUs are sm_80 or later";
  torch::manual_seed(5);
  const torch::Tensor w = torch::randn({200, 256});  // N = 200: padded to 208 for int4
  const torch::Tensor x = torch::randn({3, 9, 256}).to(torch::kBFloat16);
  for (const std::string mode : {"int8", "int4"}) {
    Projection proj(256, 200, false, torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA), mode,
                    mode == "int4" ? 64 : 0);
    proj->set_quantized(quantize_weight(w.cuda(), mode, 64));
    const QuantizedWeight cpu_q{mode, mode == "int4" ? 64 : 0, proj->quantized_weight().qweight.cpu(),
                                proj->quantized_weight().scales.cpu()};
    const torch::Tensor w64 = dequantize_weight(cpu_q, torch::kFloat64);  // [200, 256]
    const torch::Tensor x64 = x.to(torch::kFloat64);
    const torch::Tensor y64 = x64.matmul(w64.t());
    const torch::Tensor bound = (x64.abs().matmul(w64.abs().t()) + y64.abs()) * std::ldexp(1.0, -9);
    for (int64_t rows : {1, 27}) {  // decode-sized (tinygemm for int4) and prefill-sized (cuBLAS)
      const torch::Tensor y = proj->forward(x.view({27, 256}).narrow(0, 0, rows).cuda()).cpu().to(torch::kFloat64);
      const torch::Tensor diff = (y - y64.view({27, 200}).narrow(0, 0, rows)).abs();
      const double ratio = (diff / bound.view({27, 200}).narrow(0, 0, rows)).max().item<double>();
      std::printf("[numerics] cuda %s, %ld rows, vs float64: max error %.3g, max error / bound %.3f\n", mode.c_str(),
                  static_cast<long>(rows), diff.max().item<double>(), ratio);
      EXPECT_LE(ratio, 1.0) << mode << " " << rows << " rows";
    }
    // the codes quantized on the GPU are the CPU's
    const QuantizedWeight on_cpu = quantize_weight(w, mode, 64);
    EXPECT_TRUE(torch::equal(cpu_q.qweight, on_cpu.qweight)) << mode;
    EXPECT_TRUE(torch::equal(cpu_q.scales, on_cpu.scales)) << mode;
  }
}

TEST(QuantizeGpu, GradientReachesTheInputOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::manual_seed(6);
  for (const std::string mode : {"int8", "int4"}) {
    const auto o = torch::TensorOptions().dtype(torch::kBFloat16).device(torch::kCUDA);
    Projection proj(128, 64, false, o, mode, mode == "int4" ? 32 : 0);
    proj->set_quantized(quantize_weight(torch::randn({64, 128}).cuda(), mode, 32));
    const torch::Tensor x = torch::randn({4, 128}, o).requires_grad_(true);
    const torch::Tensor gy = torch::randn({4, 64}, o);
    proj->forward(x).backward(gy);
    EXPECT_TRUE(torch::equal(x.grad(), gy.matmul(dequantize_weight(proj->quantized_weight(), torch::kBFloat16)))) << mode;
  }
}

struct QuantCase {
  std::string model, mode;
  int64_t group;
  std::string fallback;
};

class QuantizedParity : public ::testing::TestWithParam<QuantCase> {};

TEST_P(QuantizedParity, CodesAreTheReferencesAndLogitsMatchTransformersOnTheDequantizedWeights) {
  const QuantCase& qc = GetParam();
  const std::string dir = std::string(testing::kTinyDir) + "/" + qc.model;
  TempDir d;
  const auto ref = testing_codes::run_reference(d, "quant_reference.py",
                                                {"--model", dir, "--mode", qc.mode, "--group", std::to_string(qc.group),
                                                 "--fallback", qc.fallback});
  ASSERT_TRUE(ref);
  Quantization q;
  q.mode = qc.mode;
  q.group = qc.group;
  q.fallback = qc.fallback;
  auto model = load_llama(dir, torch::kFloat32, q);
  EXPECT_GE(testing_codes::expect_reference_codes(*model, *ref), 4);
  const torch::Tensor ids = ref->tensor("input_ids").clone(), mask = ref->tensor("attention_mask").clone();
  adapters::ForwardContext ctx;
  torch::Tensor logits;
  {
    torch::InferenceMode guard;
    logits = model->forward({ids, {}, mask, {}}, nullptr, ctx);  // [B, T, V]
  }
  const torch::Tensor oracle64 = ref->tensor("logits.fp64").clone();
  const std::string label = qc.model + " " + q.describe() + ": logits";
  testing::expect_oracle_parity(label, logits, {}, ref->tensor("logits").clone(), oracle64, mask);
  EXPECT_LE(testing::max_abs_diff(logits, oracle64, mask), 1e-4 * testing::max_abs(oracle64, mask)) << "issue 18's bound";
}

INSTANTIATE_TEST_SUITE_P(TinyShapes, QuantizedParity,
                         ::testing::Values(QuantCase{"llama-gqa", "int8", 128, "none"},
                                           QuantCase{"llama-mha-tied", "int8", 128, "none"},
                                           QuantCase{"llama3-rope", "int4", 32, "none"},
                                           QuantCase{"llama3-rope", "int4", 64, "none"},
                                           QuantCase{"llama-gqa", "int4", 32, "int8"}),
                         [](const auto& info) {
                           std::string n = info.param.model + "_" + info.param.mode + "_g" + std::to_string(info.param.group);
                           for (auto& ch : n) if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

}  // namespace test_quantize
}  // namespace mmtune::model
