// The LR schedule against values computed by hand from LaVIN's adjust_learning_rate.
#include <cmath>
#include <gtest/gtest.h>
#include <numbers>

#include <mmtune/core/errors.h>
#include <mmtune/runtime/schedule.h>

namespace mmtune::runtime {
namespace test_schedule {

config::TrainConfig base() {
  config::TrainConfig t;
  t.lr = 1e-3;
  t.min_lr = 1e-5;
  t.epochs = 10;
  t.warmup_epochs = 2;
  t.global_batch_size = 32;
  return t;
}

TEST(Schedule, WarmupThenHalfCosineToMinLr) {
  // 40 micro-batches per epoch, 4 per step: 10 steps per epoch.
  const auto s = runtime::LrSchedule::from_config(base(), 40, 4);
  EXPECT_DOUBLE_EQ(s.warmup_epochs, 2.0);
  EXPECT_DOUBLE_EQ(s.total_epochs, 10.0);
  EXPECT_DOUBLE_EQ(s.at(0.0), 0.0);  // LaVIN starts at 0
  EXPECT_DOUBLE_EQ(s.at(1.0), 5e-4);
  EXPECT_DOUBLE_EQ(s.at(0.1), 5e-5);
  EXPECT_DOUBLE_EQ(s.at(2.0), 1e-3);
  // halfway through the cosine (epoch 6): min + (lr - min) / 2
  EXPECT_NEAR(s.at(6.0), 1e-5 + 0.99e-3 * 0.5, 1e-15);
  // a quarter of the way (epoch 4): min + (lr - min) * (1 + cos(pi/4)) / 2
  EXPECT_NEAR(s.at(4.0), 1e-5 + 0.99e-3 * 0.5 * (1.0 + std::sqrt(0.5)), 1e-15);
  EXPECT_NEAR(s.at(10.0), 1e-5, 1e-15);
  EXPECT_NEAR(s.at(12.0), 1e-5, 1e-15);  // past the end: stays at the floor
}

TEST(Schedule, FractionalEpochOfAStepIsWhereItsFirstMicroBatchSits) {
  EXPECT_DOUBLE_EQ(runtime::fractional_epoch(3, 10, 40), 3.25);
  EXPECT_DOUBLE_EQ(runtime::fractional_epoch(0, 0, 40), 0.0);
  const auto s = runtime::LrSchedule::from_config(base(), 40, 4);
  // step 3 of epoch 0 starts at micro-batch 12: e = 0.3, lr = 1e-3 * 0.3 / 2
  EXPECT_DOUBLE_EQ(s.at(runtime::fractional_epoch(0, 12, 40)), 1.5e-4);
}

TEST(Schedule, BlrScalesWithTheGlobalBatch) {
  auto t = base();
  t.lr.reset();
  t.blr = 9e-3;  // LaVIN's base LR; effective batch 32 -> 1.125e-3 (spec §1.8)
  const auto s = runtime::LrSchedule::from_config(t, 40, 4);
  EXPECT_DOUBLE_EQ(s.lr, 1.125e-3);
  EXPECT_DOUBLE_EQ(s.at(2.0), 1.125e-3);
}

TEST(Schedule, WarmupStepsAreConvertedToEpochs) {
  auto t = base();
  t.warmup_epochs = 0;
  t.warmup_steps = 5;  // 10 steps per epoch -> half an epoch
  const auto s = runtime::LrSchedule::from_config(t, 40, 4);
  EXPECT_DOUBLE_EQ(s.warmup_epochs, 0.5);
  EXPECT_DOUBLE_EQ(s.at(runtime::fractional_epoch(0, 8, 40)), 1e-3 * 0.2 / 0.5);  // step 2
  EXPECT_DOUBLE_EQ(s.at(runtime::fractional_epoch(0, 20, 40)), 1e-3);             // step 5: peak
}

TEST(Schedule, ConstantAfterWarmup) {
  auto t = base();
  t.schedule = "constant";
  const auto s = runtime::LrSchedule::from_config(t, 40, 4);
  EXPECT_DOUBLE_EQ(s.at(1.0), 5e-4);
  EXPECT_DOUBLE_EQ(s.at(2.0), 1e-3);
  EXPECT_DOUBLE_EQ(s.at(9.5), 1e-3);
}

TEST(Schedule, NoWarmupStartsAtThePeak) {
  auto t = base();
  t.warmup_epochs = 0;
  const auto s = runtime::LrSchedule::from_config(t, 40, 4);
  EXPECT_DOUBLE_EQ(s.at(0.0), 1e-3);
  EXPECT_NEAR(s.at(5.0), 1e-5 + 0.99e-3 * 0.5, 1e-15);
}

TEST(Schedule, MaxStepsEndsTheCosineWhereTheRunEnds) {
  auto t = base();
  t.max_steps = 25;  // 10 steps per epoch: the run ends at epoch 2.5
  const auto s = runtime::LrSchedule::from_config(t, 40, 4);
  EXPECT_DOUBLE_EQ(s.total_epochs, 2.5);
  EXPECT_NEAR(s.at(2.25), 1e-5 + 0.99e-3 * 0.5, 1e-15);
  // max_steps beyond the epochs changes nothing
  t.max_steps = 1000;
  EXPECT_DOUBLE_EQ(runtime::LrSchedule::from_config(t, 40, 4).total_epochs, 10.0);
}

TEST(Schedule, LeftoverMicroBatchesCountInTheEpochFraction) {
  // 42 micro-batches per epoch, 4 per step: 10 steps, 2 leftover micro-batches dropped.
  auto t = base();
  t.max_steps = 15;
  const auto s = runtime::LrSchedule::from_config(t, 42, 4);
  EXPECT_DOUBLE_EQ(s.total_epochs, 1.0 + 20.0 / 42.0);
}

TEST(Schedule, AnEpochShorterThanOneStepIsAnError) {
  try {
    runtime::LrSchedule::from_config(base(), 3, 4);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fewer than one optimiser step"), std::string::npos)
        << e.what();
    EXPECT_FALSE(e.hint().empty());
  }
  auto t = base();
  t.schedule = "linear";
  EXPECT_THROW(runtime::LrSchedule::from_config(t, 40, 4), Error);
}

}  // namespace test_schedule
}  // namespace mmtune::runtime
