// The trainer on a toy task (a bigram LM over 13 tokens with a dropout and an aux loss) and a toy
// runtime::BatchSource over data::Sampler: one process here; two-process runs and kills are in
// tests/integration/test_trainer_*.cpp.
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sstream>

#include <ATen/autocast_mode.h>

#include "test_utils.h"
#include <mmtune/core/errors.h>
#include <mmtune/core/signals.h>
#include <mmtune/train/trainer.h>

namespace mmtune::train {
namespace test_trainer {
namespace fs = std::filesystem;
constexpr int64_t kVocab = 13, kDim = 8;

/// Sample i: 4..9 tokens starting at i mod 13, each the next of t -> 3t + 1 mod 13; the first two
/// unsupervised (a "prompt").
data::Batch toy_batch(const std::vector<int64_t>& idx) {
  int64_t t_max = 0;
  for (int64_t i : idx) t_max = std::max<int64_t>(t_max, 4 + (i * 5) % 6);
  const auto b = static_cast<int64_t>(idx.size());
  data::Batch out;
  out.tokens = torch::zeros({b, t_max}, torch::kInt64);
  out.labels = torch::full({b, t_max}, data::kIgnoreIndex, torch::kInt64);
  out.attention_mask = torch::zeros({b, t_max}, torch::kBool);
  for (int64_t r = 0; r < b; ++r) {
    const int64_t i = idx[static_cast<size_t>(r)], len = 4 + (i * 5) % 6;
    out.ids.push_back(std::to_string(i));
    int64_t tok = i % kVocab;
    for (int64_t j = 0; j < len;
         ++j, tok = (tok * 3 + 1) % kVocab) {  // learnable by a bigram model
      out.tokens[r][j] = tok;
      out.attention_mask[r][j] = true;
      if (j >= 2) out.labels[r][j] = tok;
    }
  }
  out.supervised_tokens = out.labels.slice(1, 1).ne(data::kIgnoreIndex).sum().item<int64_t>();
  return out;
}

class ToySource : public runtime::BatchSource {
 public:
  ToySource(int64_t n, int64_t micro)
      : sampler_(n, data::SamplerOptions{micro, 7, true, true, 0, 1}) {}
  std::optional<data::Batch> next() override {
    if (pos_.batch >= sampler_.batches_per_epoch()) {
      pos_ = {pos_.epoch + 1, 0};
      return std::nullopt;
    }
    if (plan_epoch_ != pos_.epoch) plan_ = sampler_.epoch(pos_.epoch), plan_epoch_ = pos_.epoch;
    return toy_batch(plan_[static_cast<size_t>(pos_.batch++)]);
  }
  data::LoaderPosition position() const override { return pos_; }
  int64_t batches_per_epoch() const override { return sampler_.batches_per_epoch(); }
  void seek(data::LoaderPosition p) override { pos_ = p; }

 private:
  data::Sampler sampler_;
  data::LoaderPosition pos_;
  std::vector<std::vector<int64_t>> plan_;
  int64_t plan_epoch_ = -1;
};

class ToyTask : public runtime::TrainTask {
 public:
  explicit ToyTask(double dropout = 0.0, bool aux = true) : dropout_(dropout), aux_(aux) {
    emb_ = (torch::sin(torch::arange(kVocab * kDim, torch::kFloat32) * 0.31) * 0.5)
               .reshape({kVocab, kDim})
               .set_requires_grad(true);
    w_ = (torch::cos(torch::arange(kVocab * kDim, torch::kFloat32) * 0.17) * 0.3)
             .reshape({kVocab, kDim})
             .set_requires_grad(true);
    b_ = torch::zeros({kVocab}).set_requires_grad(true);
  }
  runtime::NamedTensors trainable_parameters() override {
    return {{"emb.weight", emb_}, {"head.weight", w_}, {"head.bias", b_}};
  }
  runtime::StepLoss forward(const data::Batch& batch) override {
    const int64_t b = batch.size(), t = batch.tokens.size(1);
    torch::Tensor h = emb_.index_select(0, batch.tokens.reshape(-1)).view({b, t, kDim});
    h = torch::dropout(h, dropout_, training_);
    const torch::Tensor logits = h.matmul(w_.t()) + b_;
    runtime::StepLoss out;
    out.loss_sum = torch::nn::functional::cross_entropy(
        logits.slice(1, 0, t - 1).reshape({-1, kVocab}), batch.labels.slice(1, 1).reshape(-1),
        torch::nn::functional::CrossEntropyFuncOptions()
            .reduction(torch::kSum)
            .ignore_index(data::kIgnoreIndex));
    if (aux_) out.aux.emplace_back("l2", 1e-2 * w_.pow(2).mean());
    if (stats) {  // a reported-only statistic: the share of tokens below 6 and from 6 up
      const double low = (batch.tokens < 6).to(torch::kFloat64).mean().item<double>();
      out.stats.emplace_back("toy.share", torch::tensor({low, 1.0 - low}, torch::kFloat64));
    }
    if (++calls_ == nan_on_call)
      out.loss_sum = out.loss_sum * std::numeric_limits<float>::quiet_NaN();
    return out;
  }
  void set_training(bool on) override { training_ = on; }
  int nan_on_call = -1;
  bool stats = false;

 private:
  torch::Tensor emb_, w_, b_;
  double dropout_;
  bool aux_;
  bool training_ = true;
  int calls_ = 0;
};

config::RunConfig toy_config(const std::string& out) {
  config::RunConfig c;
  c.output_dir = out;
  c.train.lr = 0.05;
  c.train.blr.reset();
  c.train.epochs = 3;
  c.train.warmup_steps = 2;
  c.train.warmup_epochs = 0;
  c.train.micro_batch_size = 4;
  c.train.global_batch_size = 8;
  c.train.weight_decay = 0.02;
  c.train.clip_grad = 1.0;
  c.train.log_every = 100;
  return c;
}

std::vector<nlohmann::json> metrics_lines(const std::string& dir) {
  std::istringstream in(testing::read_text(dir + "/metrics.jsonl"));
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(Trainer, GlobalBatchMustBeAMultipleOfMicroTimesRanks) {
  testing::TempDir d;
  auto cfg = toy_config(d.path());
  cfg.train.micro_batch_size = 3;
  ToyTask task;
  ToySource src(64, 3);
  try {
    Trainer t(task, src, cfg);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("not a multiple of train.micro_batch_size x ranks (3 x 1 = 3)"),
        std::string::npos)
        << e.what();
    EXPECT_NE(e.hint().find("multiple of 3"), std::string::npos) << e.hint();
  }
}

TEST(Trainer, LossFallsAndEveryStepIsLoggedWithTheScheduledLr) {
  testing::TempDir d;
  auto cfg = toy_config(d.path());
  ToyTask task;
  ToySource src(64, 4);  // 16 micro-batches per epoch, accumulation 2: 8 steps per epoch
  Trainer t(task, src, cfg, nullptr,
            {[] { return std::string("{\"family\": \"toy\"}"); }, nullptr});
  EXPECT_EQ(t.accumulation(), 2);
  EXPECT_EQ(t.total_steps(), 24);
  const auto r = t.train();
  ASSERT_EQ(r.losses.size(), 24u);
  EXPECT_LT(r.losses.back(), 0.7 * r.losses.front());
  const auto lines = metrics_lines(d.path());
  ASSERT_EQ(lines.size(), 24u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["step"], static_cast<int64_t>(i + 1));
    EXPECT_DOUBLE_EQ(lines[i]["loss"].get<double>(), r.losses[i]);
    // step i starts at micro-batch 2i of the run: epoch (2i) / 16
    const double e = static_cast<double>(2 * i) / 16.0;
    EXPECT_DOUBLE_EQ(lines[i]["lr"].get<double>(), t.schedule().at(e)) << "step " << i + 1;
    EXPECT_EQ(lines[i]["samples"], 8);
    EXPECT_TRUE(lines[i].contains("aux_l2"));
    EXPECT_GT(lines[i]["grad_norm"].get<double>(), 0.0);
    EXPECT_GT(lines[i]["peak_rss_bytes"].get<int64_t>(), 0);
  }
  EXPECT_DOUBLE_EQ(lines[0]["lr"].get<double>(), 0.0);         // warm-up from 0 (LaVIN)
  EXPECT_DOUBLE_EQ(lines[1]["lr"].get<double>(), 0.05 * 0.5);  // step 2 of 2 warm-up steps
  EXPECT_DOUBLE_EQ(lines[7]["epoch"].get<double>(), 1.0);
  // save_every 0: a checkpoint per epoch, keep_last 2
  EXPECT_FALSE(fs::exists(d.path() + "/checkpoint-8"));
  EXPECT_TRUE(fs::exists(d.path() + "/checkpoint-16"));
  EXPECT_TRUE(fs::exists(d.path() + "/checkpoint-24/adapter_config.json"));
  EXPECT_EQ(r.last_checkpoint, d.path() + "/checkpoint-24");
}

TEST(Trainer, LossIsTheTokenMeanOfTheWholeGlobalBatch) {
  testing::TempDir d;
  auto cfg = toy_config(d.path());
  cfg.train.epochs = 1;
  cfg.train.max_steps = 1;
  ToyTask task, probe;
  ToySource src(64, 4), again(64, 4);
  const auto r = Trainer(task, src, cfg).train();
  // by hand: both micro-batches of step 1, summed token losses over summed supervised tokens
  probe.set_training(false);
  auto b1 = again.next().value(), b2 = again.next().value();
  const double want =
      (probe.forward(b1).loss_sum.item<double>() + probe.forward(b2).loss_sum.item<double>()) /
      static_cast<double>(b1.supervised_tokens + b2.supervised_tokens);
  // The per-batch loss sums are the same kernels on the same batches on both sides (bitwise); only
  // the final sum-over-tokens differs (the trainer's fp32 vs double here): a few fp32 ulps of an
  // O(1) loss (6e-8 each), whatever the CPU. 1e-6 = ~16 ulps.
  EXPECT_NEAR(r.losses[0], want, 1e-6);
}

TEST(Trainer, StatsAreAveragedOverTheMicroBatchesAndLoggedButNotOptimised) {
  testing::TempDir d, plain;
  auto cfg = toy_config(d.path());
  cfg.train.epochs = 1;
  cfg.train.max_steps = 2;
  ToyTask task, probe, without;
  task.stats = probe.stats = true;
  ToySource src(64, 4), again(64, 4), src_plain(64, 4);
  const auto r = Trainer(task, src, cfg).train();
  auto cfg_plain = toy_config(plain.path());
  cfg_plain.train.epochs = 1;
  cfg_plain.train.max_steps = 2;
  const auto r_plain = Trainer(without, src_plain, cfg_plain).train();
  const auto lines = metrics_lines(d.path());
  ASSERT_EQ(lines.size(), 2u);
  for (size_t s = 0; s < 2; ++s) {
    auto b1 = again.next().value(), b2 = again.next().value();
    const torch::Tensor want = (probe.forward(b1).stats[0].second + probe.forward(b2).stats[0].second) / 2;
    const auto got = lines[s]["stats"]["toy.share"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), 2u);
    // the same fp32 stats averaged the same way; only the JSON round trip (17 digits) between
    EXPECT_NEAR(got[0], want[0].item<double>(), 1e-12) << "step " << s + 1;
    EXPECT_NEAR(got[1], want[1].item<double>(), 1e-12) << "step " << s + 1;
    EXPECT_EQ(r.losses[s], r_plain.losses[s]) << "stats must not change the objective";
  }
  EXPECT_FALSE(metrics_lines(plain.path())[0].contains("stats"));
}

TEST(Trainer, ResumeGivesBitwiseTheLossesAndWeightsOfAnUninterruptedRun) {
  testing::TempDir a, b;
  auto cfg_a = toy_config(a.path());
  cfg_a.train.save_every = 3;
  ToyTask task_a(0.2);
  ToySource src_a(64, 4);
  const auto full = Trainer(task_a, src_a, cfg_a).train();

  auto cfg_b = toy_config(b.path());
  cfg_b.train.save_every = 3;
  {
    ToyTask task(0.2);
    ToySource src(64, 4);
    TrainerHooks hooks;
    hooks.on_step = [](const StepMetrics& m) {
      if (m.step == 11) throw std::runtime_error("killed");  // after checkpoint-9, before 12
    };
    Trainer t(task, src, cfg_b, nullptr, hooks);
    EXPECT_THROW(t.train(), std::runtime_error);
  }
  torch::manual_seed(999);  // whatever the process did meanwhile
  ToyTask task_b(0.2);
  ToySource src_b(64, 4);
  Trainer t(task_b, src_b, cfg_b);
  t.resume(runtime::resolve_checkpoint(b.path(), "latest"));
  EXPECT_EQ(t.state().step, 9);
  const auto rest = t.train();
  ASSERT_EQ(rest.losses.size(), 15u);
  for (size_t i = 0; i < rest.losses.size(); ++i) {
    EXPECT_EQ(rest.losses[i], full.losses[9 + i]) << "step " << 10 + i;  // bitwise
  }
  auto pa = task_a.trainable_parameters(), pb = task_b.trainable_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
  // the metrics file of the resumed run equals the uninterrupted one (losses, lr, grad norms)
  const auto la = metrics_lines(a.path()), lb = metrics_lines(b.path());
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    for (const char* k : {"step", "loss", "lr", "grad_norm", "aux_l2", "epoch"})
      EXPECT_EQ(la[i][k], lb[i][k]) << k << " step " << i + 1;
  }
}

TEST(Trainer, NonFiniteLossSkipsTheStepAndTrainingGoesOn) {
  testing::TempDir d;
  auto cfg = toy_config(d.path());
  cfg.train.epochs = 1;
  ToyTask task;
  task.nan_on_call = 3;  // first micro-batch of step 2
  ToySource src(64, 4);
  std::vector<std::vector<torch::Tensor>> after;
  TrainerHooks hooks;
  hooks.on_step = [&](const StepMetrics&) {
    std::vector<torch::Tensor> snap;
    for (auto& [n, p] : task.trainable_parameters()) snap.push_back(p.detach().clone());
    after.push_back(snap);
  };
  Trainer t(task, src, cfg, nullptr, hooks);
  const auto r = t.train();
  EXPECT_EQ(r.skipped_steps, 1);
  EXPECT_TRUE(std::isnan(r.losses[1]));
  EXPECT_TRUE(std::isfinite(r.losses[2]));
  for (size_t i = 0; i < after[0].size(); ++i)
    EXPECT_TRUE(torch::equal(after[0][i], after[1][i])) << "step 2 changed weights";
  EXPECT_FALSE(torch::equal(after[1][0], after[2][0]));
  EXPECT_EQ(metrics_lines(d.path())[1]["skipped"], true);
  EXPECT_EQ(runtime::load_checkpoint(r.last_checkpoint).state.skipped_steps, 1);
}

TEST(Trainer, LeftoverMicroBatchesOfAnEpochAreDropped) {
  testing::TempDir d;
  auto cfg = toy_config(d.path());
  cfg.train.epochs = 2;
  ToyTask task;
  ToySource src(28, 4);  // 7 micro-batches per epoch, accumulation 2: 3 steps, 1 left over
  std::vector<double> epochs;
  TrainerHooks hooks;
  hooks.on_step = [&](const StepMetrics& m) { epochs.push_back(m.epoch); };
  Trainer t(task, src, cfg, nullptr, hooks);
  EXPECT_EQ(t.total_steps(), 6);
  t.train();
  EXPECT_EQ(epochs, (std::vector<double>{2.0 / 7, 4.0 / 7, 1.0, 1 + 2.0 / 7, 1 + 4.0 / 7, 2.0}));
  EXPECT_EQ(t.state().position, (data::LoaderPosition{2, 0}));
}

TEST(Trainer, ResumeFromACheckpointOfAnotherModelIsACheckpointError) {
  testing::TempDir d;
  auto cfg = toy_config(d.path());
  cfg.train.max_steps = 2;
  ToyTask task;
  ToySource src(64, 4);
  const auto r = Trainer(task, src, cfg).train();
  // drop a tensor from the saved weights
  auto c = runtime::load_checkpoint(r.last_checkpoint);
  c.weights.pop_back();
  c.state.step = 3;
  const std::string broken = runtime::save_checkpoint(d.path(), c, 5);
  ToyTask other;
  ToySource src2(64, 4);
  Trainer t(other, src2, cfg);
  try {
    t.resume(broken);
    FAIL() << "expected a CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("missing "), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty());
  }
}

TEST(Trainer, CtrlCSavesACheckpointAndUnwindsAndTheRunResumesFromIt) {
  testing::TempDir d;
  auto cfg = toy_config(d.path());
  cfg.train.epochs = 1;
  install_interrupt_handler();
  clear_interrupt();
  ToyTask task;
  ToySource src(64, 4);
  TrainerHooks hooks;
  hooks.on_step = [](const StepMetrics& m) {
    if (m.step == 3) std::raise(SIGINT);  // the user presses Ctrl-C during step 3
  };
  Trainer t(task, src, cfg, nullptr, hooks);
  EXPECT_THROW(t.train(), Interrupted);
  clear_interrupt();
  EXPECT_EQ(t.state().step, 3);
  EXPECT_EQ(runtime::find_latest_checkpoint(d.path()).value_or(""), d.path() + "/checkpoint-3");
  ToyTask again;
  ToySource src2(64, 4);
  Trainer t2(again, src2, cfg);
  t2.resume(d.path() + "/checkpoint-3");
  EXPECT_EQ(t2.train().steps, 8);
}

TEST(Trainer, ValidationLossEveryNSteps) {
  testing::TempDir d;
  auto cfg = toy_config(d.path());
  cfg.train.epochs = 1;
  cfg.train.eval_every = 4;
  ToyTask task(0.5);  // dropout: the validation must run in evaluation mode
  ToySource src(64, 4), val(16, 4);
  Trainer t(task, src, cfg);
  t.set_validation(&val);
  t.train();
  const auto lines = metrics_lines(d.path());
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_FALSE(lines[2].contains("val_loss"));
  ASSERT_TRUE(lines[3].contains("val_loss"));
  ASSERT_TRUE(lines[7].contains("val_loss"));
  EXPECT_LT(lines[7]["val_loss"].get<double>(), lines[3]["val_loss"].get<double>());
  // by hand, at the end: the 4 validation batches in evaluation mode, token mean
  ToySource again(16, 4);
  task.set_training(false);
  double sum = 0, tokens = 0;
  torch::NoGradGuard ng;
  while (auto b = again.next()) {
    sum += task.forward(*b).loss_sum.item<double>();
    tokens += static_cast<double>(b->supervised_tokens);
  }
  // the same per-batch loss sums (same kernels, same batches); only the final division's rounding
  // differs: a few fp32 ulps of an O(1) loss on any CPU (1e-6 = ~16 ulps)
  EXPECT_NEAR(lines[7]["val_loss"].get<double>(), sum / tokens, 1e-6);
}

TEST(Trainer, Bf16AutocastKeepsFp32MasterWeightsAndTracksFp32Losses) {
  testing::TempDir a, b;
  auto cfg = toy_config(a.path());
  cfg.train.epochs = 1;
  ToyTask fp32_task, bf16_task;
  ToySource s1(64, 4), s2(64, 4);
  const auto ref = Trainer(fp32_task, s1, cfg).train();
  cfg.output_dir = b.path();
  cfg.train.precision = "bf16";
  const auto low = Trainer(bf16_task, s2, cfg).train();
  ASSERT_EQ(low.losses.size(), ref.losses.size());
  bool differs = false;
  for (size_t i = 0; i < ref.losses.size(); ++i) {
    // bf16 keeps 8 mantissa bits (relative rounding 2^-9 per op); the toy's few chained matmuls
    // and the steps' drift stay well inside 5 %; this checks "fp32 losses tracked", not accuracy
    EXPECT_NEAR(low.losses[i], ref.losses[i], 0.05 * ref.losses[i]) << "step " << i + 1;
    differs = differs || low.losses[i] != ref.losses[i];
  }
  EXPECT_TRUE(differs) << "autocast did not run the matmul in bf16";
  for (auto& [n, p] : bf16_task.trainable_parameters())
    EXPECT_EQ(p.scalar_type(), torch::kFloat32) << n;
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU))
      << "autocast must be off after the step";
}

}  // namespace test_trainer
}  // namespace mmtune::train
