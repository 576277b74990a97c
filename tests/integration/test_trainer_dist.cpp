// The trainer over two real processes (c10d Gloo on the CPU, one intra-op thread each): gradient
// buckets, 2 ranks x micro-batch b == 1 rank x 2 accumulations x b, and a dead or hung rank making
// the survivor exit non-zero within dist timeout.
#include <chrono>
#include <filesystem>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sstream>
#include <thread>

#include "numerics.h"
#include "test_utils.h"
#include <mmtune/io/safetensors.h>

namespace mmtune::testing {
namespace test_trainer_dist {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::map<std::string, std::string> rank_env(int r, int world, const std::string& port,
                                            int timeout_s = 30) {
  return {{"RANK", std::to_string(r)},
          {"WORLD_SIZE", std::to_string(world)},
          {"LOCAL_RANK", std::to_string(r)},
          {"MASTER_ADDR", "127.0.0.1"},
          {"MASTER_PORT", port},
          {"OMP_NUM_THREADS", "1"},
          {"MMTUNE_TEST_TIMEOUT_S", std::to_string(timeout_s)}};
}

std::vector<int> spawn_ranks(const std::vector<std::string>& argv, const std::string& logs,
                             int world, int timeout_s = 30) {
  const std::string port = std::to_string(free_port());
  std::vector<int> pids;
  for (int r = 0; r < world; ++r) {
    pids.push_back(spawn_process(argv, rank_env(r, world, port, timeout_s),
                                 logs + "/out" + std::to_string(r),
                                 logs + "/err" + std::to_string(r)));
  }
  return pids;
}

std::vector<nlohmann::json> metrics(const std::string& dir) {
  std::istringstream in(read_text(dir + "/metrics.jsonl"));
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception&) {
    }
  }
  return out;
}

bool wait_for(const std::function<bool()>& ok, std::chrono::seconds limit) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST(TrainerDist, GradientBucketsSumOverTwoRanks) {
  TempDir d;
  auto pids = spawn_ranks({kDistWorkerBin, "grad_sync"}, d.path(), 2);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(wait_process(pids[r], std::chrono::seconds(90)), 0)
        << read_text(d.path() + "/err" + std::to_string(r));
    EXPECT_EQ(read_text(d.path() + "/out" + std::to_string(r)),
              "rank " + std::to_string(r) + " grad_sync ok\n");
  }
}

// One toy run (1 process, or 2 ranks), in fp32 or fp64: per-step loss and grad norm, final weights.
struct ToyRun {
  torch::Tensor losses, grad_norms, weights;  // [steps], [steps], every weight flattened (float64)
};

ToyRun toy_run(const std::string& dir, const std::string& name, int ranks, const std::string& dtype) {
  const std::vector<std::string> common{"n=64", "micro=4", "global=8", "epochs=2", "dropout=0", "dtype=" + dtype};
  std::vector<std::string> argv{kDistWorkerBin, "train", "out=" + dir + "/" + name};
  argv.insert(argv.end(), common.begin(), common.end());
  if (ranks == 1) {
    // one process: accumulation 2 x micro-batch 4
    const auto r = run_process(argv, {{"OMP_NUM_THREADS", "1"}}, std::chrono::seconds(120));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("trained 16 steps"), std::string::npos) << r.out;
  } else {
    // two processes: micro-batch 4 each, accumulation 1
    fs::create_directories(dir + "/logs-" + name);
    auto pids = spawn_ranks(argv, dir + "/logs-" + name, 2);
    for (int r = 0; r < 2; ++r)
      EXPECT_EQ(wait_process(pids[r], std::chrono::seconds(120)), 0)
          << read_text(dir + "/logs-" + name + "/err" + std::to_string(r));
    auto w0 = io::SafetensorsFile::open(dir + "/" + name + "/final.rank0.safetensors");
    auto w1 = io::SafetensorsFile::open(dir + "/" + name + "/final.rank1.safetensors");
    for (const auto& n : w0->names()) EXPECT_TRUE(torch::equal(w0->tensor(n), w1->tensor(n))) << n << ": ranks diverged";
  }
  const auto m = metrics(dir + "/" + name);
  EXPECT_EQ(m.size(), 16u) << name;
  std::vector<double> losses, norms;
  for (const auto& j : m) losses.push_back(j["loss"].get<double>()), norms.push_back(j["grad_norm"].get<double>());
  std::vector<torch::Tensor> weights;
  auto w = io::SafetensorsFile::open(dir + "/" + name + "/final.rank0.safetensors");
  for (const auto& n : w->names()) weights.push_back(w->tensor(n).to(torch::kFloat64).reshape({-1}));
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  return {torch::tensor(losses, f64), torch::tensor(norms, f64), torch::cat(weights)};
}

TEST(TrainerDist, TwoRanksEqualOneRankWithTwoAccumulations) {
  // Not bitwise in fp32: the 2-rank run sums the two micro-batches' gradients in the all-reduce,
  // the 1-rank run in autograd's accumulation, and the loss sums in another order. So both run
  // again in float64 (the toy task's tensors in fp64): there they agree to 1e-12, and the fp32
  // runs agree within 4x the larger fp32-vs-fp64 drift of either run (tests/numerics.h), for the
  // 16 per-step losses, the grad norms and the final weights.
  TempDir d;
  const ToyRun one32 = toy_run(d.path(), "one", 1, "fp32"), two32 = toy_run(d.path(), "two", 2, "fp32");
  const ToyRun one64 = toy_run(d.path(), "one64", 1, "fp64"), two64 = toy_run(d.path(), "two64", 2, "fp64");
  const auto a = metrics(d.path() + "/one"), b = metrics(d.path() + "/two");
  ASSERT_EQ(a.size(), 16u);
  ASSERT_EQ(b.size(), 16u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["samples"], b[i]["samples"]);
    EXPECT_EQ(a[i]["supervised_tokens"], b[i]["supervised_tokens"]) << "the same samples per step";
  }
  ASSERT_EQ(one32.losses.sizes(), one64.losses.sizes());
  expect_same_result("toy trainer, 1 rank x 2 accumulations vs 2 ranks: per-step losses", one32.losses, two32.losses,
                     one64.losses, two64.losses, {}, 1e-12);
  expect_same_result("toy trainer, 1 rank x 2 accumulations vs 2 ranks: grad norms", one32.grad_norms,
                     two32.grad_norms, one64.grad_norms, two64.grad_norms, {}, 1e-12);
  expect_same_result("toy trainer, 1 rank x 2 accumulations vs 2 ranks: final weights", one32.weights, two32.weights,
                     one64.weights, two64.weights, {}, 1e-12);
  auto mean = [&](size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += a[i]["loss"].get<double>();
    return s / static_cast<double>(to - from);
  };
  EXPECT_LT(mean(13, 16), 0.5 * mean(0, 3)) << "the toy task must learn";
}

/// Starts a long 2-rank run, waits for step 3 in rank 0's metrics, then does `act` to rank 1.
void expect_survivor_fails(int signal_to_rank1, int timeout_s, double max_seconds) {
  TempDir d;
  auto pids = spawn_ranks({kDistWorkerBin, "train", "out=" + d.path() + "/run", "n=64", "micro=4",
                           "global=8", "epochs=1000", "sleep_ms=20"},
                          d.path(), 2, timeout_s);
  ASSERT_TRUE(
      wait_for([&] { return metrics(d.path() + "/run").size() >= 3; }, std::chrono::seconds(60)))
      << read_text(d.path() + "/err0");
  const auto t0 = Clock::now();
  ::kill(pids[1], signal_to_rank1);
  const int rc = wait_process(pids[0], std::chrono::seconds(static_cast<int>(max_seconds) + 30));
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  ::kill(pids[1], SIGKILL);
  wait_process(pids[1], std::chrono::seconds(30));
  const std::string err = read_text(d.path() + "/err0");
  EXPECT_EQ(rc, 1) << err;
  EXPECT_LE(took, max_seconds) << err;
  EXPECT_NE(err.find("rank 0/2"), std::string::npos) << err;
  EXPECT_NE(err.find("dist.timeout_s"), std::string::npos) << "one line with the hint expected:\n"
                                                           << err;
  std::cout << "[ measured ] survivor exited " << rc << " after " << took << " s\n";
}

TEST(TrainerDist, KilledRankMakesTheOtherExitNonZero) {
  expect_survivor_fails(SIGKILL, 5, 5 + 10);
}

TEST(TrainerDist, HungRankMakesTheOtherExitNonZeroAfterTheTimeout) {
  expect_survivor_fails(SIGSTOP, 4, 4 + 10);
}

}  // namespace test_trainer_dist
}  // namespace mmtune::testing
