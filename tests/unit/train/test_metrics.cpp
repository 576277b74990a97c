// Metrics lines, the resumed metrics file, peak memory probes and the progress text.
#include <cmath>
#include <fstream>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_utils.h"
#include <mmtune/core/memory.h>
#include <mmtune/core/terminal.h>
#include <mmtune/train/metrics.h>

namespace mmtune::train {
namespace test_metrics {
using json = nlohmann::json;

StepMetrics sample(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.epoch = step / 10.0;
  m.loss = 1.0 / static_cast<double>(step);
  m.aux = {{"balance", 0.25}};
  m.lr = 1e-3;
  m.grad_norm = 0.5;
  m.samples = 8;
  m.tokens = 1000;
  m.supervised_tokens = 100;
  m.step_seconds = 0.5;
  m.peak_rss_bytes = 4096;
  return m;
}

TEST(Metrics, JsonLineHasEveryField) {
  const json j = json::parse(metrics_json_line(sample(3)));
  EXPECT_EQ(j["step"], 3);
  EXPECT_DOUBLE_EQ(j["loss"].get<double>(),
                   1.0 / 3.0);  // full precision: resume comparisons are exact
  EXPECT_DOUBLE_EQ(j["aux_balance"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j["tokens_per_s"].get<double>(), 2000.0);
  EXPECT_DOUBLE_EQ(j["samples_per_s"].get<double>(), 16.0);
  EXPECT_EQ(j["peak_rss_bytes"], 4096);
  EXPECT_FALSE(j.contains("peak_cuda_bytes"));
  EXPECT_FALSE(j.contains("val_loss"));
  EXPECT_EQ(j["skipped"], false);
  StepMetrics nan = sample(4);
  nan.loss = NAN;
  nan.skipped = true;
  EXPECT_TRUE(json::parse(metrics_json_line(nan))["loss"].is_null());
  EXPECT_FALSE(j.contains("stats"));  // only when the task reports some
}

TEST(Metrics, StatsGoUnderOneNestedFieldAndStayOffTheProgressLine) {
  StepMetrics m = sample(2);
  m.stats = {{"mole.llm.0.usage", {0.25, 0.75}}, {"mole.llm.1.usage", {1.0, 0.0}}};
  const json j = json::parse(metrics_json_line(m));
  ASSERT_TRUE(j["stats"].is_object());
  EXPECT_EQ(j["stats"]["mole.llm.0.usage"], json::parse("[0.25, 0.75]"));
  EXPECT_EQ(j["stats"]["mole.llm.1.usage"], json::parse("[1.0, 0.0]"));
  EXPECT_EQ(Progress(10, 0, 1, false).line(m).find("usage"), std::string::npos);
}

TEST(Metrics, ResumedLogKeepsStepsUpToTheCheckpointOnly) {
  testing::TempDir d;
  const std::string path = d.path() + "/run/metrics.jsonl";
  {
    MetricsLog log(path);
    for (int s = 1; s <= 5; ++s) log.write(sample(s));
  }
  {
    std::ofstream(path, std::ios::app) << "{\"step\": 6, \"lo";  // a line cut by a kill
  }
  {
    MetricsLog log(path, 3);  // resumed from checkpoint-3
    log.write(sample(4));
  }
  std::istringstream in(testing::read_text(path));
  std::vector<int64_t> steps;
  for (std::string line; std::getline(in, line);)
    steps.push_back(json::parse(line)["step"].get<int64_t>());
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4}));
  MetricsLog fresh(path);  // a new run starts a new file
  EXPECT_EQ(testing::read_text(path), "");
}

TEST(Metrics, PeakMemoryProbes) {
  const int64_t before = mmtune::peak_rss_bytes();
  EXPECT_GT(before, 0);
  {
    auto big = torch::ones({64, 1024, 1024}, torch::kFloat32);  // 256 MiB touched
    EXPECT_GE(mmtune::peak_rss_bytes(), before);
    EXPECT_GT(mmtune::peak_rss_bytes(), 256LL << 20);
  }
  EXPECT_EQ(peak_cuda_allocated_bytes(torch::Device(torch::kCPU)), -1);
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(peak_cuda_allocated_bytes(torch::Device(torch::kCUDA, 0)), -1);
  }
}

TEST(Metrics, ProgressLineAndDurations) {
  EXPECT_EQ(mmtune::format_duration(3.2), "3s");
  EXPECT_EQ(mmtune::format_duration(125), "2m05s");
  EXPECT_EQ(mmtune::format_duration(3723), "1h02m03s");
  EXPECT_EQ(mmtune::format_duration(NAN), "?");
  Progress p(100, 0, 10, false);
  const std::string line = p.line(sample(10));
  EXPECT_NE(line.find("step 10/100"), std::string::npos) << line;
  EXPECT_NE(line.find("loss 0.1000"), std::string::npos) << line;
  EXPECT_NE(line.find("balance 0.2500"), std::string::npos) << line;
  EXPECT_NE(line.find("2000 tok/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA"), std::string::npos) << line;
  StepMetrics skipped = sample(11);
  skipped.skipped = true;
  EXPECT_NE(p.line(skipped).find("skipped"), std::string::npos);
}

}  // namespace test_metrics
}  // namespace mmtune::train
