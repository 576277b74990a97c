#include "numerics.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mmtune/adapters/attach.h>
#include <mmtune/model/weights.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>

namespace mmtune::testing {

namespace {

// `mask` broadcast from the left onto `like` (a [B, T] mask selects rows of [B, T, V]).
torch::Tensor expand_mask(const torch::Tensor& mask, const torch::Tensor& like) {
  torch::Tensor m = mask.to(torch::kBool);
  while (m.dim() < like.dim()) m = m.unsqueeze(-1);
  return m.expand(like.sizes());
}

torch::Tensor selected(const torch::Tensor& t, const torch::Tensor& mask) {
  const torch::Tensor d = t.detach().to(torch::kCPU, torch::kFloat64);
  return mask.defined() ? d.masked_select(expand_mask(mask.to(torch::kCPU), d)) : d.reshape({-1});
}

double max_or_zero(const torch::Tensor& t) { return t.numel() == 0 ? 0.0 : t.abs().max().item<double>(); }

std::string ratio(double err, double noise) {
  if (noise <= 0) return "noise 0";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f x noise", err / noise);
  return buf;
}

void check_noise_is_rounding(const std::string& label, double noise, double scale) {
  EXPECT_LE(noise, kMaxNoise * std::max(1.0, scale))
      << label << ": the fp32-vs-fp64 difference " << noise << " (|values| up to " << scale
      << ") is not rounding noise; a discrete choice (argmax, top-1 routing) must differ between the precisions";
}

}  // namespace

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return std::numeric_limits<double>::infinity();
  return max_or_zero(selected(a, mask) - selected(b, mask));
}

double max_abs(const torch::Tensor& a, const torch::Tensor& mask) { return max_or_zero(selected(a, mask)); }

double fp32_bound(double noise, double scale) {
  return std::max(kNoiseFactor * noise, kNoiseFloor * std::max(1.0, scale));
}

double expect_oracle_parity(const std::string& label, const torch::Tensor& ours32, const torch::Tensor& ours64,
                            const torch::Tensor& oracle32, const torch::Tensor& oracle64, const torch::Tensor& mask,
                            double fp64_tol) {
  EXPECT_EQ(ours32.scalar_type(), torch::kFloat32) << label;
  EXPECT_EQ(oracle32.scalar_type(), torch::kFloat32) << label;
  EXPECT_EQ(oracle64.scalar_type(), torch::kFloat64) << label << ": the oracle's float64 output";
  const double scale = max_abs(oracle64, mask);
  const double noise = max_abs_diff(oracle32, oracle64, mask);
  const double bound = fp32_bound(noise, scale);
  const double err32 = max_abs_diff(ours32, oracle32, mask);
  const double err32_64 = max_abs_diff(ours32, oracle64, mask);
  double err64 = std::numeric_limits<double>::quiet_NaN();
  if (ours64.defined()) {
    EXPECT_EQ(ours64.scalar_type(), torch::kFloat64) << label;
    err64 = max_abs_diff(ours64, oracle64, mask);
  }
  std::printf("[numerics] %s: oracle fp32 noise %.3g (|values| up to %.3g); mmtune fp32 vs oracle fp32 %.3g (%s, "
              "bound %.3g), vs oracle fp64 %.3g; mmtune fp64 vs oracle fp64 %.3g\n",
              label.c_str(), noise, scale, err32, ratio(err32, noise).c_str(), bound, err32_64, err64);
  std::fflush(stdout);
  check_noise_is_rounding(label, noise, scale);
  EXPECT_LE(err32, bound) << label << ": mmtune fp32 vs oracle fp32 (oracle noise " << noise << ")";
  if (ours64.defined()) {
    EXPECT_LE(err64, fp64_tol) << label << ": mmtune fp64 vs oracle fp64";
  }
  return bound;
}

double expect_same_result(const std::string& label, const torch::Tensor& a32, const torch::Tensor& b32,
                          const torch::Tensor& a64, const torch::Tensor& b64, const torch::Tensor& mask,
                          double fp64_tol) {
  const double scale = std::max(max_abs(a64, mask), max_abs(b64, mask));
  const double noise = std::max(max_abs_diff(a32, a64, mask), max_abs_diff(b32, b64, mask));
  const double bound = fp32_bound(noise, scale);
  const double d32 = max_abs_diff(a32, b32, mask);
  const double d64 = max_abs_diff(a64, b64, mask);
  std::printf("[numerics] %s: fp32 noise %.3g (|values| up to %.3g); fp32 ways differ by %.3g (%s, bound %.3g); "
              "fp64 ways differ by %.3g\n",
              label.c_str(), noise, scale, d32, ratio(d32, noise).c_str(), bound, d64);
  std::fflush(stdout);
  EXPECT_EQ(a64.scalar_type(), torch::kFloat64) << label;
  check_noise_is_rounding(label, noise, scale);
  EXPECT_LE(d64, fp64_tol) << label << ": the two ways in float64";
  EXPECT_LE(d32, bound) << label << ": the two ways in float32 (fp32 noise " << noise << ")";
  return bound;
}

double expect_oracle_parity(const std::string& label, double ours32, double ours64, double oracle32, double oracle64,
                            double fp64_tol) {
  const double scale = std::abs(oracle64), noise = std::abs(oracle32 - oracle64);
  const double bound = fp32_bound(noise, scale);
  const double err32 = std::abs(ours32 - oracle32), err64 = std::abs(ours64 - oracle64);
  char fp64_part[64] = "no float64 run";
  if (!std::isnan(ours64)) std::snprintf(fp64_part, sizeof fp64_part, "mmtune fp64 vs oracle fp64 %.3g", err64);
  std::printf("[numerics] %s: oracle fp32 noise %.3g (|value| %.6g); mmtune fp32 vs oracle fp32 %.3g (%s, bound %.3g), "
              "vs oracle fp64 %.3g; %s\n",
              label.c_str(), noise, scale, err32, ratio(err32, noise).c_str(), bound, std::abs(ours32 - oracle64),
              fp64_part);
  std::fflush(stdout);
  check_noise_is_rounding(label, noise, scale);
  EXPECT_LE(err32, bound) << label << ": mmtune fp32 vs oracle fp32 (oracle noise " << noise << ")";
  if (!std::isnan(ours64)) {
    EXPECT_LE(err64, fp64_tol) << label << ": mmtune fp64 vs oracle fp64";
  }
  return bound;
}

runtime::BuiltModel fp64_twin(const config::RunConfig& cfg, const runtime::BuiltModel& m32) {
  config::RunConfig c = cfg;
  c.dtype = "fp64";
  runtime::BuiltModel m = runtime::build_model(c, runtime::Weights::kLoad);  // all float64, masters included
  std::map<std::string, torch::Tensor> mine;
  for (auto& [name, t] : m.trainable) mine[name] = t;
  EXPECT_EQ(mine.size(), m32.trainable.size()) << "the twin has other trainable tensors";
  torch::NoGradGuard ng;
  for (const auto& [name, t] : m32.trainable) {
    auto it = mine.find(name);
    if (it == mine.end()) {
      ADD_FAILURE() << "fp64_twin: " << name << " is not trainable in the float64 model";
      continue;
    }
    it->second.copy_(t);
  }
  return m;
}

model::LlamaDecoder llama_fp64_twin(const std::string& dir, const config::AdapterConfig& adapter,
                                    model::LlamaDecoderImpl& m32) {
  model::LlamaDecoder m = model::load_llama(dir, torch::kFloat64);
  adapters::attach_to_llama(*m, adapter);
  m->to(torch::kFloat64);
  const auto src = m32.named_parameters(true);
  torch::NoGradGuard ng;
  for (auto& p : m->named_parameters(true)) {
    if (!src.contains(p.key())) {
      ADD_FAILURE() << "llama_fp64_twin: " << p.key() << " is not in the float32 model";
      continue;
    }
    p.value().copy_(src[p.key()]);
  }
  EXPECT_EQ(m->named_parameters(true).size(), src.size());
  return m;
}

}  // namespace mmtune::testing
