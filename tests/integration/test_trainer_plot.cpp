// scripts/plot_metrics.py draws the metrics.jsonl of a real (toy) training run as a PNG, with the
// Pillow fallback the setup venv always supports, and fails with one line for a bad input.
#include <gtest/gtest.h>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_trainer_plot {

TEST(TrainerPlot, MetricsOfAToyRunBecomeAPng) {
  TempDir d;
  const auto run = run_process({kDistWorkerBin, "train", "out=" + d.path() + "/run", "n=32",
                                "micro=4", "global=8", "epochs=2"},
                               {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(60));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string script = std::string(kSourceDir) + "/scripts/plot_metrics.py";
  const std::string png = d.path() + "/curves.png";
  const auto r = run_process({kPython, script, d.path() + "/run/metrics.jsonl",
                              d.path() + "/run/metrics.jsonl", "-o", png, "--backend", "pillow",
                              "--smooth", "0.5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("loss, aux_l2, lr, grad_norm"), std::string::npos) << r.out;
  const std::string bytes = read_text(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));

  const auto missing = run_process({kPython, script, d.path() + "/nope.jsonl", "-o", png});
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.err.find("error: cannot read"), std::string::npos) << missing.err;
  const auto bad_key = run_process(
      {kPython, script, d.path() + "/run/metrics.jsonl", "-o", png, "--keys", "loss,nope"});
  EXPECT_NE(bad_key.exit_code, 0);
  EXPECT_NE(bad_key.err.find("no values for nope"), std::string::npos) << bad_key.err;
}

}  // namespace test_trainer_plot
}  // namespace mmtune::testing
