// LLaVA-MoLE (issue 9): grouped dispatch = the dense masked computation (forward and gradients,
// every gate mode), the balancing loss against hand-computed values, the fresh model = the base,
// the vision path's start/end vectors, cached decoding, and the Vicuna-7B trainable count.
#include <gtest/gtest.h>

#include <limits>

#include <mmtune/adapters/attach.h>
#include <mmtune/adapters/mole.h>
#include <mmtune/config/load.h>
#include <mmtune/core/errors.h>
#include <mmtune/model/weights.h>
#include <mmtune/runtime/build_model.h>
#include <mmtune/train/dry_run.h>
#include <mmtune/runtime/lm_loss.h>
#include <mmtune/runtime/multimodal_task.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "fixtures.h"
#include "numerics.h"
#include "test_utils.h"

namespace mmtune::adapters {
namespace test_mole {

namespace F = torch::nn::functional;

MoleConfig mole_options(const std::string& gate_mode, int64_t K = 3, int64_t rank = 4) {
  MoleConfig c;
  c.experts = K;
  c.rank = rank;
  c.alpha = 3.0 * rank;  // scale 3: a wrong scale cannot hide
  c.dropout = 0.0;
  c.gate_mode = gate_mode;
  return c;
}

// A block of width D = 16 with an FFN of 24.
BlockShape small_shape(int64_t D = 16, int64_t Fh = 24) {
  BlockShape s;
  s.width = D;
  for (Proj p : {Proj::kQ, Proj::kK, Proj::kV, Proj::kO}) {
    s.in[static_cast<int>(p)] = D;
    s.out[static_cast<int>(p)] = D;
  }
  s.in[static_cast<int>(Proj::kGate)] = s.in[static_cast<int>(Proj::kUp)] = D;
  s.out[static_cast<int>(Proj::kGate)] = s.out[static_cast<int>(Proj::kUp)] = Fh;
  s.in[static_cast<int>(Proj::kDown)] = Fh;
  s.out[static_cast<int>(Proj::kDown)] = D;
  return s;
}

// The spec's dense form (§3.2): every expert on every token, weighted per token by
//   st_top1: st * onehot with st = onehot - sg(p) + p;  none: onehot;  switch: p * onehot;  dense_soft: p
torch::Tensor dense_coefficients(const torch::Tensor& p, const std::string& mode) {
  const torch::Tensor onehot = F::one_hot(p.argmax(-1), p.size(-1)).to(p.scalar_type());  // [N, K]
  if (mode == "st_top1") return (onehot - p.detach() + p) * onehot;
  if (mode == "none") return onehot;
  if (mode == "switch") return p * onehot;
  return p;
}

torch::Tensor dense_masked_delta(const torch::Tensor& x, const MoleExpertsImpl& e, const torch::Tensor& coef, double scale) {
  torch::Tensor out = torch::zeros({x.size(0), e.lora_b().size(1)}, x.options());
  for (int64_t k = 0; k < e.experts(); ++k) {
    const torch::Tensor lora = torch::matmul(torch::matmul(x, e.lora_a()[k].t()), e.lora_b()[k].t()) * scale;  // [N, out]
    out = out + coef.select(1, k).unsqueeze(1) * lora;
  }
  return out;
}

struct Ffn {
  torch::Tensor wg, wu, wd;  // frozen weights [F, D], [F, D], [D, F]
};

// y = W_down (silu(W_gate m + dg) * (W_up m + du)) + dd through the block's hooks, in the order the
// LLaMA block calls them. m [B, T, D].
torch::Tensor ffn_via_hooks(MoleBlockImpl& b, const Ffn& w, const torch::Tensor& m, ForwardContext& ctx) {
  b.at(Site::kPreMlp, m, ctx);
  const torch::Tensor g = F::linear(m, w.wg) + b.delta(Proj::kGate, m, ctx);
  const torch::Tensor u = F::linear(m, w.wu) + b.delta(Proj::kUp, m, ctx);
  const torch::Tensor a = torch::silu(g) * u;
  return F::linear(a, w.wd) + b.delta(Proj::kDown, a, ctx);
}

torch::Tensor ffn_dense(MoleBlockImpl& b, const Ffn& w, const torch::Tensor& m, const std::string& mode) {
  const int64_t B = m.size(0), T = m.size(1), D = m.size(2);
  const torch::Tensor x = m.reshape({B * T, D});
  const torch::Tensor p = F::linear(x, b.router_weight(), b.router_bias()).softmax(-1);
  const torch::Tensor c = dense_coefficients(p, mode);
  const torch::Tensor g = F::linear(x, w.wg) + dense_masked_delta(x, b.experts(Proj::kGate), c, b.scale());
  const torch::Tensor u = F::linear(x, w.wu) + dense_masked_delta(x, b.experts(Proj::kUp), c, b.scale());
  const torch::Tensor a = torch::silu(g) * u;
  return (F::linear(a, w.wd) + dense_masked_delta(a, b.experts(Proj::kDown), c, b.scale())).view({B, T, D});
}

std::map<std::string, torch::Tensor> grads(MoleBlockImpl& b, const torch::Tensor& m) {
  std::map<std::string, torch::Tensor> g;
  for (const auto& p : b.named_parameters()) {
    if (p.value().grad().defined()) g[p.key()] = p.value().grad().clone();
  }
  g["input"] = m.grad().clone();
  return g;
}

void zero_grads(MoleBlockImpl& b, torch::Tensor& m) {
  for (auto& p : b.parameters()) p.mutable_grad() = torch::Tensor();
  m.mutable_grad() = torch::Tensor();
}

// The output and every gradient (flattened, concatenated in name order) of one way to the FFN.
torch::Tensor flat(const torch::Tensor& y, const std::map<std::string, torch::Tensor>& g) {
  std::vector<torch::Tensor> parts{y.detach().reshape({-1})};
  for (const auto& [name, t] : g) parts.push_back(t.reshape({-1}));
  return torch::cat(parts);
}

struct TwoWays {
  torch::Tensor grouped, dense;  // flat(): output then every gradient
};

// Forward and every gradient of the grouped block against the dense masked computation, on O(1)
// values (output and gradients below ~2), in `dtype` (the block's fp32 masters cast for fp64).
TwoWays grouped_vs_dense(const std::string& mode, const torch::Tensor& router_bias, std::vector<int64_t>* counts,
                         torch::Dtype dtype) {
  torch::manual_seed(3);
  MoleBlock block(mole_options(mode), small_shape(), 0, 2, torch::kCPU);
  {
    torch::NoGradGuard ng;
    for (Proj p : {Proj::kGate, Proj::kUp, Proj::kDown}) block->experts(p).lora_b().normal_(0.0, 0.1);
    block->router_weight().mul_(4.0);  // spread the routing
    if (router_bias.defined()) block->router_bias().copy_(router_bias);
  }
  block->to(dtype);
  const Ffn w{(torch::randn({24, 16}) * 0.15).to(dtype), (torch::randn({24, 16}) * 0.15).to(dtype),
              (torch::randn({16, 24}) * 0.15).to(dtype)};
  torch::Tensor m = torch::randn({2, 7, 16}).to(dtype).requires_grad_(true);  // [B, T, D]
  const torch::Tensor probe = (torch::randn({2, 7, 16}) * 0.02).to(dtype);    // a random linear read-out

  ForwardContext ctx;
  const torch::Tensor y = ffn_via_hooks(*block, w, m, ctx);
  if (counts && mode != "dense_soft") {
    const torch::Tensor c = ctx.state.at("mole.llm.0.counts");
    counts->assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  }
  (y * probe).sum().backward();
  const auto g_grouped = grads(*block, m);
  zero_grads(*block, m);

  const torch::Tensor y_dense = ffn_dense(*block, w, m, mode);
  (y_dense * probe).sum().backward();
  const auto g_dense = grads(*block, m);

  EXPECT_GT(y_dense.abs().max().item<double>(), 0.1);
  EXPECT_EQ(g_grouped.size(), g_dense.size()) << mode << ": the same parameters must receive gradients";
  double largest_grad = 0;
  for (const auto& [name, g] : g_dense) {
    if (!g_grouped.count(name)) ADD_FAILURE() << mode << ": " << name << " has a dense gradient but no grouped one";
    largest_grad = std::max(largest_grad, g.abs().max().item<double>());
  }
  EXPECT_GT(largest_grad, 0.05) << mode << ": gradients too small for the comparison to mean much";
  // the router learns from the task loss in every mode but `none` (there: balancing loss only)
  const bool router_grad = g_grouped.count("router.weight") && g_grouped.at("router.weight").abs().sum().item<double>() > 0;
  EXPECT_EQ(router_grad, mode != "none") << mode;
  if (g_grouped.size() != g_dense.size()) return {flat(y, {}), flat(y_dense, {})};
  return {flat(y, g_grouped), flat(y_dense, g_dense)};
}

// Grouped vs dense in float32 and float64: exact in float64 (1e-12), fp32 within 4x the noise
// (tests/numerics.h). The top-1 choices must not flip between the precisions (the noise check).
void expect_grouped_equals_dense(const std::string& label, const std::string& mode, const torch::Tensor& router_bias,
                                 std::vector<int64_t>* counts) {
  const TwoWays f32 = grouped_vs_dense(mode, router_bias, counts, torch::kFloat32);
  const TwoWays f64 = grouped_vs_dense(mode, router_bias, nullptr, torch::kFloat64);
  testing::expect_same_result("MoLE " + mode + label + ": grouped vs dense masked, output and every gradient",
                              f32.grouped, f32.dense, f64.grouped, f64.dense, {}, 1e-12);
}

TEST(MoleDispatch, GroupedEqualsTheDenseMaskedComputationForwardAndGradients) {
  for (const std::string mode : {"st_top1", "none", "switch", "dense_soft"}) {
    std::vector<int64_t> counts;
    expect_grouped_equals_dense("", mode, {}, &counts);
    if (mode != "dense_soft") {
      ASSERT_EQ(counts.size(), 3u);
      for (int64_t c : counts) EXPECT_GT(c, 0) << mode << ": every expert must see tokens for the check to mean much";
    }
  }
}

TEST(MoleDispatch, AnExpertWithoutTokensIsSkippedAndStillExact) {
  std::vector<int64_t> counts;
  // the bias sends almost everything to expert 1; expert 0 gets nothing
  expect_grouped_equals_dense(", expert 0 without tokens", "st_top1", torch::tensor({-50.0f, 3.0f, 0.0f}), &counts);
  ASSERT_EQ(counts.size(), 3u);
  EXPECT_EQ(counts[0], 0);
}

// The timing note: grouped dispatch vs the dense masked computation (every expert on every
// token) at K = 3 and 8 on a mid-size shape, forward + backward of one FFN, in the same run; the
// two must still agree.
TEST(MoleDispatch, MidSizeGroupedVsDenseMaskedStepTime) {
  const int64_t D = 256, Fh = 688, rank = 16;
  for (int64_t K : {3, 8}) {
    torch::manual_seed(K);
    MoleBlock block(mole_options("st_top1", K, rank), small_shape(D, Fh), 0, 1, torch::kCPU);
    {
      torch::NoGradGuard ng;
      for (Proj p : {Proj::kGate, Proj::kUp, Proj::kDown}) block->experts(p).lora_b().normal_(0.0, 0.02);
      block->router_weight().mul_(8.0);
    }
    Ffn w{torch::randn({Fh, D}) * 0.05, torch::randn({Fh, D}) * 0.05, torch::randn({D, Fh}) * 0.05};
    torch::Tensor m = torch::randn({4, 256, D}).requires_grad_(true);  // 1024 tokens
    auto step = [&](int how) {  // 0 grouped, 1 dense masked, 2 the frozen FFN alone
      zero_grads(*block, m);
      ForwardContext ctx;
      const auto t0 = std::chrono::steady_clock::now();
      const torch::Tensor y = how == 0   ? ffn_via_hooks(*block, w, m, ctx)
                              : how == 1 ? ffn_dense(*block, w, m, "st_top1")
                                         : F::linear(torch::silu(F::linear(m, w.wg)) * F::linear(m, w.wu), w.wd);
      y.square().mean().backward();
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      return std::pair{ms, y.detach()};
    };
    std::vector<double> tg, td, tb;
    torch::Tensor yg, yd;
    for (int rep = 0; rep < 4; ++rep) {  // the first of each is a warm-up, dropped
      auto [a, ya] = step(0);
      auto [b, yb] = step(1);
      const double base = step(2).first;
      if (rep > 0) tg.push_back(a), td.push_back(b), tb.push_back(base);
      yg = ya, yd = yb;
    }
    // the two ways agree: exact in float64, in float32 within 4x the fp32 noise (tests/numerics.h)
    block->to(torch::kFloat64);
    w = Ffn{w.wg.to(torch::kFloat64), w.wu.to(torch::kFloat64), w.wd.to(torch::kFloat64)};
    m = m.detach().to(torch::kFloat64).requires_grad_(true);
    const torch::Tensor yg64 = step(0).second, yd64 = step(1).second;
    testing::expect_same_result("MoLE mid-size FFN, K=" + std::to_string(K) + ": grouped vs dense masked", yg, yd,
                                yg64, yd64);
    std::sort(tg.begin(), tg.end());
    std::sort(td.begin(), td.end());
    std::sort(tb.begin(), tb.end());
    std::cout << "MoLE FFN fwd+bwd, 1024 tokens, D=" << D << " F=" << Fh << " r=" << rank << " K=" << K
              << " (1 thread): grouped " << tg[1] << " ms, dense masked " << td[1] << " ms, frozen FFN alone " << tb[1] << " ms (medians of 3)\n";
  }
}

TEST(MoleDispatch, RoutingSortsStablyAndCountsPerExpert) {
  // logits [5, 3]: experts 2, 0, 2, 1, 0
  const torch::Tensor logits = torch::tensor({0.f, 0.f, 1.f, 2.f, 0.f, 0.f, 0.f, 1.f, 3.f, 0.f, 1.f, 0.f, 5.f, 1.f, 1.f}).view({5, 3});
  const MoleRouting r = route_top1(logits, "st_top1");
  EXPECT_TRUE(torch::equal(r.expert, torch::tensor({2, 0, 2, 1, 0}, torch::kLong)));
  EXPECT_TRUE(torch::equal(r.order, torch::tensor({1, 4, 3, 0, 2}, torch::kLong)));  // by expert, input order within
  EXPECT_EQ(r.counts, (std::vector<int64_t>{2, 1, 2}));
  EXPECT_TRUE(torch::equal(r.gate, torch::ones({5})));  // st_top1: value exactly 1
  EXPECT_TRUE(torch::allclose(route_top1(logits, "switch").gate, r.probs.amax(-1)));
  EXPECT_THROW(route_top1(logits, "soft"), c10::Error);
}

// ---------------------------------------------------------------------------- balancing loss

// Two layers, K = D = 3, router = identity (logits = x), B = 2, T = 3, sample 1's last token is
// padding. The expected values come from a few lines of plain Python (no torch):
//   per sample b: Pbar_b / Fbar_b = mean over both layers and valid tokens of softmax(x) / onehot(argmax x)
//     sample 0: Pbar (0.320383, 0.302838, 0.376780), Fbar (1/3, 1/3, 1/3)
//     sample 1: Pbar (0.442787, 0.274471, 0.282742), Fbar (1/2, 1/4, 1/4)
//   released: mean_b sum_k Pbar Fbar = 0.347015012580
//   switch:   mean over layers of K sum_k f_k P_k over the batch's valid tokens = 1.029618605091
// Padding tokens route strongly (x = [5, 5.5, 0], [0, 9, 0]): counting them would change both values.
struct HandExample {
  torch::Tensor x0, x1, valid;
};

HandExample hand_example() {
  HandExample e;
  e.x0 = torch::tensor({2.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 0.f, 3.f, 1.f, 0.f, 0.f, 1.f, 2.f, 0.f, 5.f, 5.5f, 0.f}).view({2, 3, 3});
  e.x1 = torch::tensor({0.f, 2.f, 1.f, 1.f, 0.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 2.f, 3.f, 1.f, 0.f, 0.f, 9.f, 0.f}).view({2, 3, 3});
  e.valid = torch::tensor({1, 1, 1, 1, 1, 0}, torch::kBool).view({2, 3});
  return e;
}

std::vector<MoleBlock> identity_router_layers(const MoleConfig& c, int64_t n) {
  std::vector<MoleBlock> layers;
  for (int64_t l = 0; l < n; ++l) {
    layers.emplace_back(c, small_shape(3, 5), l, n, torch::kCPU);
    torch::NoGradGuard ng;
    layers.back()->router_weight().copy_(torch::eye(3));
    layers.back()->router_bias().zero_();
  }
  return layers;
}

TEST(MoleBalance, EqualsTheHandComputedValueOverValidTokensOnly) {
  const HandExample e = hand_example();
  for (const auto& [form, expected] : {std::pair<std::string, double>{"per_sample_cross_layer", 0.347015012580},
                                       std::pair<std::string, double>{"switch_per_layer", 1.029618605091}}) {
    MoleConfig c = mole_options("st_top1");
    c.balance_loss = form;
    c.balance_weight = 0.25;
    auto layers = identity_router_layers(c, 2);
    ForwardContext ctx;
    ctx.valid_mask = e.valid;
    layers[0]->at(Site::kPreMlp, e.x0, ctx);
    EXPECT_TRUE(ctx.aux_losses.empty()) << "the loss is pushed after the last layer only";
    layers[1]->at(Site::kPreMlp, e.x1, ctx);
    ASSERT_EQ(ctx.aux_losses.size(), 1u) << form;
    EXPECT_EQ(ctx.aux_losses[0].first, kMoleBalanceLoss);
    // the hand values are exact to 12 digits; mmtune's fp32 loss is a dozen fp32 operations on O(1)
    // values (softmax, sums, products), each rounding by half an ulp: 16 ulps of the value bound it
    // whatever kernels the CPU picks
    const double tol = 16 * std::numeric_limits<float>::epsilon() * expected;
    EXPECT_NEAR(ctx.aux_losses[0].second.item<double>(), 0.25 * expected, 0.25 * tol) << form;
    EXPECT_NEAR(ctx.state.at("mole.balance").item<double>(), expected, tol) << form;
    // usage counts per layer, valid tokens only: layer 0 -> (2, 2, 1), layer 1 -> (2, 1, 2)
    EXPECT_TRUE(torch::equal(mole_expert_tokens(ctx), torch::tensor({2.f, 2.f, 1.f, 2.f, 1.f, 2.f}).view({2, 3})));
    // a second forward with the same context starts afresh: one more loss, the same value
    layers[0]->at(Site::kPreMlp, e.x0, ctx);
    layers[1]->at(Site::kPreMlp, e.x1, ctx);
    ASSERT_EQ(ctx.aux_losses.size(), 2u);
    EXPECT_NEAR(ctx.aux_losses[1].second.item<double>(), 0.25 * expected, 0.25 * tol) << form;
  }
}

TEST(MoleBalance, UniformRoutingGivesOneOverKAndCollapseGivesOne) {
  const HandExample e = hand_example();
  for (int64_t K : {2, 3, 5}) {
    MoleConfig c = mole_options("st_top1", K);
    auto run = [&](const std::function<void(MoleBlockImpl&)>& set) {
      std::vector<MoleBlock> layers;
      for (int64_t l = 0; l < 2; ++l) {
        layers.emplace_back(c, small_shape(3, 5), l, 2, torch::kCPU);
        torch::NoGradGuard ng;
        set(*layers.back());
      }
      ForwardContext ctx;
      ctx.valid_mask = e.valid;
      layers[0]->at(Site::kPreMlp, e.x0, ctx);
      layers[1]->at(Site::kPreMlp, e.x1, ctx);
      return ctx.state.at("mole.balance").item<double>();
    };
    // uniform probabilities (a zero router): 1/K whatever the (tied) assignment; collapse (every
    // token on expert 0 with p -> 1, e^-40 away) gives the maximum, 1. Both within 16 fp32 ulps,
    // as the hand-value test says
    const double ulps16 = 16 * std::numeric_limits<float>::epsilon();
    EXPECT_NEAR(run([](MoleBlockImpl& b) { b.router_weight().zero_(); b.router_bias().zero_(); }), 1.0 / K, ulps16 / K)
        << K;
    EXPECT_NEAR(run([](MoleBlockImpl& b) { b.router_weight().zero_(); b.router_bias().zero_(); b.router_bias()[0] = 40.0; }),
                1.0, ulps16) << K;
  }
}

TEST(MoleBalance, NoLossForOneExpertOrZeroWeightAndNoneAtDecodeSteps) {
  const HandExample e = hand_example();
  auto pushed = [&](MoleConfig c, bool prefill) {
    auto layers = identity_router_layers(c, 2);
    ForwardContext ctx;
    ctx.valid_mask = e.valid;
    ctx.prefill = prefill;
    layers[0]->at(Site::kPreMlp, e.x0, ctx);
    layers[1]->at(Site::kPreMlp, e.x1, ctx);
    return ctx.aux_losses.size();
  };
  MoleConfig c = mole_options("st_top1");
  EXPECT_EQ(pushed(c, true), 1u);
  EXPECT_EQ(pushed(c, false), 0u);
  c.balance_weight = 0.0;
  EXPECT_EQ(pushed(c, true), 0u);
  // K = 1: the router is trivial, no loss (spec §3.3)
  MoleConfig one = mole_options("st_top1", 1);
  MoleBlock b0(one, small_shape(3, 5), 0, 1, torch::kCPU);
  ForwardContext ctx;
  b0->at(Site::kPreMlp, e.x0, ctx);
  EXPECT_TRUE(ctx.aux_losses.empty());
  // a valid mask that does not cover the input is an error, not a silent broadcast
  ForwardContext bad;
  bad.valid_mask = torch::ones({2, 4}, torch::kBool);
  MoleBlock b1(c, small_shape(3, 5), 0, 2, torch::kCPU);
  EXPECT_THROW(b1->at(Site::kPreMlp, e.x0, bad), c10::Error);
}

}  // namespace test_mole
}  // namespace mmtune::adapters

// ------------------------------------------------------------------------- the whole model

namespace mmtune::train {
namespace test_mole {

namespace F = torch::nn::functional;
using adapters::ForwardContext;

config::RunConfig mole_tiny(std::vector<std::string> extra = {}) {
  const std::string tiny = testing::kTinyDir;
  std::vector<std::string> o{"model.path=" + tiny + "/llama-gqa", "vision.path=" + tiny + "/clip-vit"};
  o.insert(o.end(), extra.begin(), extra.end());
  return config::load_config(std::string(testing::kSourceDir) + "/configs/mole/tiny.yaml", o, adapters::builtin_adapters());
}

// Rows 0 and 2 carry an image (BOS, 2 prefix tokens, n slots, text), row 1 is text-only with 4
// padding positions at the end (tests/fixtures.h).
data::Batch mixed_batch(int64_t n, uint64_t seed = 7) { return testing::mixed_image_batch(n, 32, seed); }

void randomise(runtime::BuiltModel& m, uint64_t seed, double scale = 0.2) {
  torch::manual_seed(seed);
  torch::NoGradGuard ng;
  for (auto& [name, t] : m.trainable) t.copy_(torch::randn_like(t) * scale);
}

TEST(MoleModel, ConfigRefusesLoraOnTheFfnOutsideTheExperts) {
  try {
    mole_tiny({"adapter.mole.attn_targets=[q, up]"});
    FAIL() << "attn_targets with an FFN projection must be refused";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("adapter.mole.attn_targets"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'up' is an FFN projection"), std::string::npos) << e.what();
  }
}

TEST(MoleModel, FreshModelEqualsTheBaseBitwise) {
  runtime::BuiltModel m = runtime::build_model(mole_tiny(), runtime::Weights::kLoad);
  EXPECT_EQ(m.model->visual_tokens(), 16 + 2);  // 4x4 patches + start/end
  const data::Batch b = mixed_batch(18);
  ForwardContext ctx;
  torch::NoGradGuard ng;
  const torch::Tensor with = m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
  adapters::set_adapters_enabled(m.model->llm(), false);
  ForwardContext ctx_off;
  const torch::Tensor without = m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx_off);
  EXPECT_TRUE(torch::equal(with, without)) << (with - without).abs().max().item<double>();
  // text-only rows through the frozen LLM alone (no MultimodalLM, no adapters at all)
  auto base = model::load_llama(std::string(testing::kTinyDir) + "/llama-gqa", torch::kFloat32);
  adapters::set_adapters_enabled(m.model->llm(), true);
  ForwardContext c1, c2;
  const torch::Tensor ids = b.tokens.narrow(0, 1, 1), mask = b.attention_mask.narrow(0, 1, 1);
  EXPECT_TRUE(torch::equal(m.model->llm().forward({ids, {}, mask, {}}, nullptr, c1), base->forward({ids, {}, mask, {}}, nullptr, c2)));
  // once trained the adapters do change the output
  randomise(m, 3);
  ForwardContext c3;
  EXPECT_FALSE(torch::allclose(m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, c3), without));
}

TEST(MoleModel, VisualSpanIsStartPatchesEnd) {
  runtime::BuiltModel m = runtime::build_model(mole_tiny(), runtime::Weights::kLoad);
  randomise(m, 5);
  const data::Batch b = mixed_batch(18);
  ForwardContext ctx;
  torch::NoGradGuard ng;
  const auto seq = m.model->assemble(runtime::model_input(b, torch::kCPU), ctx);
  const torch::Tensor start = m.model->llm().named_parameters()["adapters.mole.visual_start_token"].view({-1});
  const torch::Tensor end = m.model->llm().named_parameters()["adapters.mole.visual_end_token"].view({-1});
  for (int64_t r : {0, 2}) {
    EXPECT_TRUE(torch::equal(seq.embeds[r][3], start)) << r;
    EXPECT_TRUE(torch::equal(seq.embeds[r][3 + 17], end)) << r;
    EXPECT_FALSE(torch::equal(seq.embeds[r][4], start));
  }
  // the span in between is the projector on the last layer's patch tokens
  ForwardContext c2;
  const torch::Tensor feats = m.model->visual_features(b.images.narrow(0, 0, 1), c2);  // [1, 16, 64]
  EXPECT_EQ(feats.sizes(), (std::vector<int64_t>{1, 16, 64}));
  const auto& p = m.model->llm().named_parameters();
  const torch::Tensor v = F::linear(torch::gelu(F::linear(feats, p["adapters.mole.projector.0.weight"], p["adapters.mole.projector.0.bias"])),
                                    p["adapters.mole.projector.2.weight"], p["adapters.mole.projector.2.bias"]);
  // the projector runs these very ops on the same shapes: 1e-6 (~10 ulps of these O(0.1) values)
  // leaves room for another GELU vectorisation only
  EXPECT_TRUE(torch::allclose(seq.embeds[0].narrow(0, 4, 16), v[0], 1e-6, 1e-6));
}

TEST(MoleModel, OneForwardPushesOneBalancingLossAndUsageOverValidTokens) {
  runtime::BuiltModel m = runtime::build_model(mole_tiny({"adapter.mole.balance_weight=0.5"}), runtime::Weights::kLoad);
  randomise(m, 9);
  const data::Batch b = mixed_batch(18);
  ForwardContext ctx;
  const torch::Tensor logits = m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
  ASSERT_EQ(ctx.aux_losses.size(), 1u);
  EXPECT_EQ(ctx.aux_losses[0].first, adapters::kMoleBalanceLoss);
  const torch::Tensor usage = adapters::mole_expert_tokens(ctx);  // [L, K]
  ASSERT_EQ(usage.sizes(), (std::vector<int64_t>{3, 3}));
  // every layer counts each valid position once: 3 rows, 4 padding positions
  const double valid = b.attention_mask.sum().item<double>();
  EXPECT_TRUE(torch::equal(usage.sum(1), torch::full({3}, valid)));
  // the loss reaches the routers; the LM loss plus it trains only adapter parameters
  const torch::Tensor loss = runtime::lm_loss_sum(logits, b.labels) + ctx.aux_losses[0].second;
  loss.backward();
  for (const auto& [name, t] : m.trainable) {
    if (name.find("router") != std::string::npos) {
      ASSERT_TRUE(t.grad().defined()) << name;
      EXPECT_GT(t.grad().abs().sum().item<double>(), 0) << name;
    }
  }
  for (const auto& p : m.model->named_parameters()) {
    if (!p.value().requires_grad()) {
      EXPECT_FALSE(p.value().grad().defined()) << p.key();
    }
  }
}

TEST(MoleModel, TheTrainTaskReportsPerLayerUsageFractionsOutsideTheObjective) {
  runtime::BuiltModel m = runtime::build_model(mole_tiny(), runtime::Weights::kLoad);
  randomise(m, 11);
  const data::Batch b = mixed_batch(18);
  runtime::MultimodalTask task(m, torch::kCPU);
  const runtime::StepLoss sl = task.forward(b);
  ASSERT_EQ(sl.aux.size(), 1u);  // the balancing loss is the only aux loss
  ASSERT_EQ(sl.stats.size(), 3u);
  // the same forward's counts, row-normalised: one [K] fraction vector per layer, in state order
  ForwardContext ctx;
  torch::NoGradGuard ng;
  m.model->forward(runtime::model_input(b, torch::kCPU), nullptr, ctx);
  const torch::Tensor usage = adapters::mole_expert_tokens(ctx).to(torch::kFloat64);  // [L, K]
  for (int64_t l = 0; l < 3; ++l) {
    EXPECT_EQ(sl.stats[l].first, "mole.llm." + std::to_string(l) + ".usage");
    EXPECT_FALSE(sl.stats[l].second.requires_grad());
    EXPECT_TRUE(torch::allclose(sl.stats[l].second, usage[l] / usage[l].sum())) << sl.stats[l].second;
    EXPECT_NEAR(sl.stats[l].second.sum().item<double>(), 1.0, 1e-12);  // integer counts / their sum, in double
  }
}

TEST(MoleModel, CachedDecodingEqualsTheFullForward) {
  // routing is per token and kept nowhere across steps: prefill + one token at a time = one pass
  const auto cfg = mole_tiny();
  runtime::BuiltModel m = runtime::build_model(cfg, runtime::Weights::kLoad);
  randomise(m, 13);
  runtime::BuiltModel m64 = testing::fp64_twin(cfg, m);
  torch::manual_seed(1);
  const torch::Tensor ids = torch::randint(3, 400, {2, 10});
  torch::NoGradGuard ng;
  auto run = [&](runtime::BuiltModel& bm, ForwardContext& ctx) {
    auto& llm = bm.model->llm();
    ForwardContext full_ctx;
    const torch::Tensor full = llm.forward({ids, {}, {}, {}}, nullptr, full_ctx);
    auto cache = llm.new_cache(2, 10);
    std::vector<torch::Tensor> out{llm.forward({ids.narrow(1, 0, 6), {}, {}, {}}, &cache, ctx)};
    for (int64_t t = 6; t < 10; ++t) out.push_back(llm.forward({ids.narrow(1, t, 1), {}, {}, {}}, &cache, ctx));
    return std::make_pair(torch::cat(out, 1), full);
  };
  ForwardContext ctx, ctx64;
  const auto [stepped, full] = run(m, ctx);
  const auto [stepped64, full64] = run(m64, ctx64);
  // the cached path runs attention over other shapes: exact in float64, fp32 within 4x the noise
  // (a token whose top-1 expert flips between the precisions would fail the noise check)
  testing::expect_same_result("MoLE cached decoding vs the full forward", stepped, full, stepped64, full64);
  EXPECT_EQ(ctx.aux_losses.size(), 1u) << "the prefill pushes the loss, the decode steps do not";
}

TEST(MoleModel, DryRunCountsVicuna7bR32K3Exactly) {
  const auto cfg = config::load_config(std::string(testing::kSourceDir) + "/configs/mole/vicuna7b-e3-r32.yaml", {},
                                       adapters::builtin_adapters());
  const DryRun d = dry_run(cfg);
  // attention LoRA 32 x 4 x 32 x (4096 + 4096) + experts 32 x 3 x 32 x 3 x (4096 + 11008) + routers
  // 32 x (3 x 4096 + 3) + projector 1024 x 4096 + 4096 + 4096 x 4096 + 4096 + start/end 2 x 4096
  EXPECT_EQ(d.trainable, 194'134'112);
  EXPECT_NE(format_dry_run(d).find("194,134,112"), std::string::npos) << format_dry_run(d);
  // and by part, from the named parameters of the same meta model
  const runtime::BuiltModel b = runtime::build_model(cfg, runtime::Weights::kMeta);
  std::map<std::string, int64_t> parts;
  for (const auto& [name, t] : b.trainable) {
    std::string part = name.find(".moe_") != std::string::npos     ? "experts"
                       : name.find(".router.") != std::string::npos ? "routers"
                       : name.find("projector") != std::string::npos ? "projector"
                       : name.find("visual_") != std::string::npos   ? "start_end"
                       : name.find(".lora_") != std::string::npos    ? "attention_lora"
                                                                     : "other: " + name;
    parts[part] += t.numel();
  }
  EXPECT_EQ(parts, (std::map<std::string, int64_t>{{"attention_lora", 33'554'432},
                                                   {"experts", 139'198'464},
                                                   {"routers", 393'312},
                                                   {"projector", 20'979'712},
                                                   {"start_end", 8'192}}));
}

}  // namespace test_mole
}  // namespace mmtune::train

namespace mmtune::train {
namespace test_mole {

TEST(MoleModel, StartEndVectorsFollowVisionStartEndTokens) {
  std::map<bool, int64_t> span;
  for (const bool on : {true, false}) {
    runtime::BuiltModel m = runtime::build_model(mole_tiny({std::string("vision.start_end_tokens=") + (on ? "true" : "false")}),
                               runtime::Weights::kLoad);
    int64_t vectors = 0;
    for (const auto& [name, t] : m.trainable)
      if (name.find("visual_start_token") != std::string::npos || name.find("visual_end_token") != std::string::npos)
        vectors += t.numel();
    EXPECT_EQ(vectors, on ? 2 * m.model->llm().config().hidden_size : 0) << on;
    span[on] = m.model->visual_tokens();
  }
  EXPECT_EQ(span[true], span[false] + 2) << "the two vectors frame the projected features";
}

}  // namespace test_mole
}  // namespace mmtune::train
