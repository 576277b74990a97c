// The scripts behind issue 9's MoLE-vs-LoRA experiment (scripts/experiments/mole_vs_lora.sh) on a
// few samples: the conflicting-formats data trains a MoLE adapter through `mmtune train`,
// score_formats.py scores it through scripted `mmtune chat`, and mole_routing.py's independent
// Python MoLE forward reproduces mmtune's greedy answers exactly (so its per-task routing numbers
// describe the model mmtune evaluated), with usage fractions that sum to 1 per layer.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_mole_experiment {

using json = nlohmann::json;

std::string source(const std::string& rel) { return std::string(kSourceDir) + "/" + rel; }
std::string tiny(const std::string& name) { return std::string(kTinyDir) + "/" + name; }

TEST(MoleExperiment, ScriptsScoreThroughChatAndThePythonRoutingReproducesMmtune) {
  TempDir d;
  const std::string data = d.path() + "/data", run = d.path() + "/mole";
  auto r = run_process({kPython, source("scripts/make_conflicting_formats.py"), "--out", data, "--train", "24", "--test",
                        "6", "--seed", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json test = json::parse(read_text(data + "/test.json"));
  ASSERT_EQ(test.size(), 6u);
  EXPECT_EQ(test[0]["conversations"].size(), 2u);
  r = run_process({kMmtuneBin, "train", "--config", source("configs/mole/tiny.yaml"), "model.path=" + tiny("llama-gqa"),
                   "vision.path=" + tiny("clip-vit"), "data.json=" + data + "/train.json", "output_dir=" + run,
                   "train.max_steps=3", "train.lr=5e-3", "train.micro_batch_size=4", "train.global_batch_size=8"},
                  {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(180));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // metrics.jsonl carries the per-layer usage of every step
  const std::string first = read_text(run + "/metrics.jsonl").substr(0, read_text(run + "/metrics.jsonl").find('\n'));
  const json m = json::parse(first);
  ASSERT_TRUE(m.contains("stats")) << first;
  for (int l = 0; l < 3; ++l) {
    const auto u = m["stats"]["mole.llm." + std::to_string(l) + ".usage"].get<std::vector<double>>();
    ASSERT_EQ(u.size(), 3u);
    // fractions of one count, divided in double: exact up to double rounding
    EXPECT_NEAR(u[0] + u[1] + u[2], 1.0, 1e-9);
  }

  r = run_process({kPython, source("scripts/experiments/score_formats.py"), "--mmtune", kMmtuneBin, "--config",
                   source("configs/mole/tiny.yaml"), "--checkpoint", run, "--test", data + "/test.json", "--out",
                   run + "/answers.jsonl", "--label", "t", "model.path=" + tiny("llama-gqa"), "vision.path=" + tiny("clip-vit")},
                  {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(180));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json score = json::parse(r.out);
  EXPECT_EQ(score["count"], 6);
  for (const char* task : {"quiz", "tag"}) {
    ASSERT_TRUE(score["per_task"].contains(task)) << r.out;
    for (const char* k : {"exact", "content", "format", "cross"}) {
      const double v = score["per_task"][task][k].get<double>();
      EXPECT_TRUE(v >= 0.0 && v <= 1.0) << task << " " << k;
    }
  }

  r = run_process({kPython, source("scripts/experiments/mole_routing.py"), "--model", tiny("llama-gqa"), "--adapter",
                   run + "/checkpoint-3", "--test", data + "/test.json", "--answers", run + "/answers.jsonl"},
                  {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(180));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json routing = json::parse(r.out);
  EXPECT_DOUBLE_EQ(routing["agreement"].get<double>(), 1.0) << "the Python MoLE forward must answer as mmtune does";
  for (const auto& [task, t] : routing["per_task"].items()) {
    const auto usage = t["answer_usage"].get<std::vector<std::vector<double>>>();
    ASSERT_EQ(usage.size(), 3u) << task;
    // the script writes the fractions rounded to 4 decimals: their sum is 1 within 3 x 5e-5
    for (const auto& row : usage) EXPECT_NEAR(row[0] + row[1] + row[2], 1.0, 1e-3) << task;
  }
}

}  // namespace test_mole_experiment
}  // namespace mmtune::testing
