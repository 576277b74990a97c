// AdamW and gradient clipping against PyTorch (torch.optim.AdamW with timm's two groups,
// torch.nn.utils.clip_grad_norm_) run from the setup venv, plus the state export/import. The
// oracle runs in float32 and float64, and so does mmtune's AdamW (fp64 masters are allowed for
// the numerical checks): tolerances as tests/numerics.h derives them.
#include <cmath>
#include <gtest/gtest.h>

#include "numerics.h"
#include "test_utils.h"
#include <mmtune/core/errors.h>
#include <mmtune/io/safetensors.h>
#include <mmtune/train/optim.h>

namespace mmtune::train {
namespace test_optim {

// Runs the five steps in float32 (NAME) and again in float64 (NAME.fp64) from the same values.
const char* kOracle = R"PY(
import sys, torch
from safetensors.torch import load_file, save_file
d = load_file(sys.argv[1])
names = ["layer.weight", "layer.bias", "scale", "router.weight"]
out = {}
for dtype, suffix in ((torch.float32, ""), (torch.float64, ".fp64")):
    params = {n: torch.nn.Parameter(d["init." + n].to(dtype, copy=True)) for n in names}
    no_decay = lambda n: n.endswith(".bias") or params[n].ndim <= 1   # timm's rule
    groups = [{"params": [params[n] for n in names if not no_decay(n)], "weight_decay": float(d["wd"])},
              {"params": [params[n] for n in names if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1.0, betas=(0.9, 0.95), eps=1e-8)
    for s, lr in enumerate(d["lrs"].tolist()):
        for n in names:
            params[n].grad = d[f"grad{s}.{n}"].to(dtype, copy=True)  # clipping works in place
        norm = torch.nn.utils.clip_grad_norm_([params[n] for n in names], max_norm=float(d["max_norm"]))
        out[f"norm{s}" + suffix] = norm.reshape(1).clone()
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        for n in names:
            out[f"param{s}.{n}" + suffix] = params[n].detach().clone()
    for n in names:
        out["exp_avg." + n + suffix] = opt.state[params[n]]["exp_avg"]
        out["exp_avg_sq." + n + suffix] = opt.state[params[n]]["exp_avg_sq"]
save_file(out, sys.argv[2])
)PY";

runtime::NamedTensors make_params() {
  auto ramp = [](std::vector<int64_t> shape, double phase) {
    const int64_t n = c10::multiply_integers(shape);
    return torch::sin(torch::arange(n, torch::kFloat32) * 0.7 + phase)
        .reshape(shape)
        .set_requires_grad(true);
  };
  return {{"layer.weight", ramp({3, 4}, 0.1)},
          {"layer.bias", ramp({3}, 0.2)},
          {"scale", ramp({4}, 0.3)},
          {"router.weight", ramp({2, 4}, 0.4)}};
}

torch::Tensor grad_for(int step, const torch::Tensor& p, int k) {
  // step 2 has large gradients, so clipping at 1.0 bites there only
  const double scale = step == 2 ? 5.0 : 0.05;
  return torch::cos(torch::arange(p.numel(), torch::kFloat32) * (0.37 * (step + 1)) + k)
             .reshape(p.sizes()) *
         scale;
}

const std::vector<double> kLrs = {1e-3, 2e-3, 5e-4, 1e-3, 3e-3};
constexpr double kMaxNorm = 1.0, kWd = 0.02;

AdamWOptions options() {
  AdamWOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = kWd;
  return o;
}

TEST(Optim, TimmWeightDecayGroups) {
  const auto p = make_params();
  AdamW opt(p, options());
  EXPECT_EQ(opt.decayed_names(), (std::vector<std::string>{"layer.weight", "router.weight"}));
  EXPECT_TRUE(exempt_from_weight_decay("bias", torch::zeros({2, 2})));
  EXPECT_TRUE(exempt_from_weight_decay("adapter.conv.bias", torch::zeros({8, 3})));
  EXPECT_TRUE(exempt_from_weight_decay("modality_embedding", torch::zeros({4})));
  EXPECT_FALSE(exempt_from_weight_decay("modality_embedding.weight", torch::zeros({2, 4})));
  EXPECT_FALSE(exempt_from_weight_decay("unbias", torch::zeros({2, 4})));
}

TEST(Optim, FiveStepsEqualPyTorchAdamWWithClipping) {
  testing::TempDir d;
  auto params = make_params();
  runtime::NamedTensors in;
  for (const auto& [n, p] : params) in.emplace_back("init." + n, p.detach().clone());
  for (int s = 0; s < static_cast<int>(kLrs.size()); ++s) {
    int k = 0;
    for (const auto& [n, p] : params)
      in.emplace_back("grad" + std::to_string(s) + "." + n, grad_for(s, p, k++));
  }
  in.emplace_back("lrs", torch::tensor(kLrs, torch::kFloat64));
  in.emplace_back("max_norm", torch::tensor(kMaxNorm, torch::kFloat64));
  in.emplace_back("wd", torch::tensor(kWd, torch::kFloat64));
  io::save_safetensors(d.path() + "/in.safetensors", in);
  const auto r =
      testing::run_process({testing::kPython, "-c", kOracle, d.path() + "/in.safetensors",
                            d.path() + "/out.safetensors"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto want = io::SafetensorsFile::open(d.path() + "/out.safetensors");

  // mmtune's five steps in `dtype`: the norms, every parameter after every step, the final state
  // (flattened in a fixed order), and the oracle's in the same order
  struct Run {
    torch::Tensor norms, params, state;
  };
  auto ours = [&](torch::Dtype dtype) {
    runtime::NamedTensors p;
    for (const auto& [n, t] : make_params()) p.emplace_back(n, t.detach().to(dtype).set_requires_grad(true));
    AdamW opt(p, options());
    std::vector<double> norms;
    std::vector<torch::Tensor> after;
    for (int s = 0; s < static_cast<int>(kLrs.size()); ++s) {
      int k = 0;
      for (auto& [n, t] : p) t.mutable_grad() = grad_for(s, t, k++).to(dtype);
      norms.push_back(clip_grad_norm(p, kMaxNorm));
      opt.step(kLrs[s]);
      for (const auto& [n, t] : p) after.push_back(t.detach().to(torch::kFloat64).reshape({-1}).clone());
    }
    std::map<std::string, torch::Tensor> st;
    for (auto& [n, t] : opt.state_tensors()) st[n] = t;
    std::vector<torch::Tensor> state;
    for (const auto& [n, t] : p) {
      state.push_back(st.at("exp_avg." + n).to(torch::kFloat64).reshape({-1}));
      state.push_back(st.at("exp_avg_sq." + n).to(torch::kFloat64).reshape({-1}));
      EXPECT_EQ(st.at("step." + n).item<int64_t>(), 5);
    }
    return Run{torch::tensor(norms, torch::kFloat64), torch::cat(after), torch::cat(state)};
  };
  auto oracle = [&](const std::string& suffix) {
    std::vector<double> norms;
    std::vector<torch::Tensor> after, state;
    for (int s = 0; s < static_cast<int>(kLrs.size()); ++s) {
      norms.push_back(want->tensor("norm" + std::to_string(s) + suffix).item<double>());
      for (const auto& [n, t] : params)
        after.push_back(want->tensor("param" + std::to_string(s) + "." + n + suffix).to(torch::kFloat64).reshape({-1}));
    }
    for (const auto& [n, t] : params) {
      state.push_back(want->tensor("exp_avg." + n + suffix).to(torch::kFloat64).reshape({-1}));
      state.push_back(want->tensor("exp_avg_sq." + n + suffix).to(torch::kFloat64).reshape({-1}));
    }
    return Run{torch::tensor(norms, torch::kFloat64), torch::cat(after), torch::cat(state)};
  };
  const Run m32 = ours(torch::kFloat32), m64 = ours(torch::kFloat64), o32 = oracle(""), o64 = oracle(".fp64");
  // the fp32 sides are compared as fp32 values widened to double (exact)
  auto f32 = [](const torch::Tensor& t) { return t.to(torch::kFloat32); };
  testing::expect_oracle_parity("AdamW vs PyTorch: clipped grad norms of 5 steps", f32(m32.norms), m64.norms,
                                f32(o32.norms), o64.norms);
  testing::expect_oracle_parity("AdamW vs PyTorch: every parameter after each of 5 steps", f32(m32.params), m64.params,
                                f32(o32.params), o64.params);
  testing::expect_oracle_parity("AdamW vs PyTorch: exp_avg and exp_avg_sq after 5 steps", f32(m32.state), m64.state,
                                f32(o32.state), o64.state);
}

TEST(Optim, GradNormIsReportedWithoutClippingAndUndefinedGradsAreSkipped) {
  auto params = make_params();
  params[0].second.mutable_grad() = torch::full({3, 4}, 3.0f);  // norm sqrt(12 * 9) = 6 * sqrt(3)
  params[1].second.mutable_grad() = torch::full({3}, 4.0f);     // norm sqrt(48) = 4 * sqrt(3)
  const double norm = clip_grad_norm(params, 0.0);
  EXPECT_NEAR(norm, std::sqrt(108.0 + 48.0), 1e-5);  // fp32 sums of exact squares, sqrt: ~10 ulps of 12.5
  EXPECT_TRUE(torch::equal(params[0].second.grad(), torch::full({3, 4}, 3.0f)));  // untouched
  const auto before_scale = params[2].second.detach().clone();
  AdamW opt(params, options());
  opt.step(1e-2);
  EXPECT_TRUE(torch::equal(params[2].second.detach(), before_scale))
      << "a tensor without a gradient must not move";
  EXPECT_EQ(opt.steps_of("scale"), 0);
  EXPECT_EQ(opt.steps_of("layer.weight"), 1);
  opt.zero_grad();
  EXPECT_FALSE(params[0].second.grad().defined());
  // clipping scales every gradient by max_norm / (norm + 1e-6)
  params[0].second.mutable_grad() = torch::full({3, 4}, 3.0f);
  const double n2 = clip_grad_norm(params, 1.0);
  EXPECT_NEAR(params[0].second.grad().norm().item<double>(),
              1.0 * (6 * std::sqrt(3.0)) / (n2 + 1e-6), 1e-6);
}

TEST(Optim, ExportedStateResumesExactly) {
  auto a = make_params();
  auto b = make_params();
  AdamW opt_a(a, options());
  std::map<std::string, torch::Tensor> state;
  for (int s = 0; s < 5; ++s) {
    int k = 0;
    for (auto& [n, p] : a) p.mutable_grad() = grad_for(s, p, k++);
    opt_a.step(kLrs[s]);
    if (s == 2) {  // b takes over a's weights and exported state after 3 steps
      torch::NoGradGuard ng;
      for (size_t i = 0; i < a.size(); ++i) b[i].second.copy_(a[i].second);
      for (auto& [n, t] : opt_a.state_tensors()) state[n] = t;
    }
  }
  AdamW opt_b(b, options());
  opt_b.load_state_tensors(state, "mem");
  EXPECT_EQ(opt_b.steps_of("layer.weight"), 3);
  for (int s = 3; s < 5; ++s) {
    int k = 0;
    for (auto& [n, p] : b) p.mutable_grad() = grad_for(s, p, k++);
    opt_b.step(kLrs[s]);
  }
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
}

TEST(Optim, StateThatDoesNotFitIsOneCheckpointErrorListingEveryProblem) {
  AdamW opt(make_params(), options());
  std::map<std::string, torch::Tensor> state;
  for (auto& [n, t] : opt.state_tensors()) state[n] = t;
  state.erase("exp_avg.scale");
  state["exp_avg_sq.layer.bias"] = torch::zeros({5});
  state["exp_avg.other"] = torch::zeros({1});
  try {
    opt.load_state_tensors(state, "ckpt/trainer_state.safetensors");
    FAIL() << "expected a CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("ckpt/trainer_state.safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("missing exp_avg.scale"), std::string::npos) << m;
    EXPECT_NE(m.find("exp_avg_sq.layer.bias has shape [5]"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected exp_avg.other"), std::string::npos) << m;
    EXPECT_FALSE(e.hint().empty());
  }
}

TEST(Optim, NonFp32TrainableTensorIsRefused) {
  runtime::NamedTensors p{{"w", torch::zeros({2, 2}, torch::kBFloat16).set_requires_grad(true)}};
  EXPECT_THROW(AdamW(p, options()), Error);
  runtime::NamedTensors dup{{"w", torch::zeros({2})}, {"w", torch::zeros({2})}};
  EXPECT_THROW(AdamW(dup, options()), Error);
}

}  // namespace test_optim
}  // namespace mmtune::train
