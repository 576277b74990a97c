// Exact resume from outside kills: a run SIGKILLed after some steps and resumed from its latest
// checkpoint logs bitwise the losses of an uninterrupted run and ends with bitwise its weights
// (one process and two, dropout on, so RNG states matter); a kill in the middle of a checkpoint
// write leaves the previous checkpoint loadable, and the resumed run cleans the temp directory.
#include <chrono>
#include <filesystem>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sstream>
#include <thread>

#include "test_utils.h"
#include <mmtune/io/safetensors.h>
#include <mmtune/runtime/checkpoint.h>

namespace mmtune::testing {
namespace test_trainer_resume {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kRun{"n=64",        "micro=4",      "global=8",   "epochs=3",
                                    "dropout=0.1", "save_every=2", "keep_last=3"};

std::vector<std::string> worker(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{kDistWorkerBin, "train", "out=" + out};
  argv.insert(argv.end(), kRun.begin(), kRun.end());
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

std::map<std::string, std::string> env_for(int r, int world, const std::string& port,
                                           std::map<std::string, std::string> extra = {}) {
  std::map<std::string, std::string> env{{"OMP_NUM_THREADS", "1"}};
  if (world > 1) {
    env.insert({{"RANK", std::to_string(r)},
                {"WORLD_SIZE", std::to_string(world)},
                {"LOCAL_RANK", std::to_string(r)},
                {"MASTER_ADDR", "127.0.0.1"},
                {"MASTER_PORT", port}});
  }
  env.insert(extra.begin(), extra.end());
  return env;
}

/// Runs `world` ranks of `argv` to completion; fails the test on a non-zero exit.
void run_ranks(const std::vector<std::string>& argv, int world, const std::string& logs) {
  const std::string port = std::to_string(free_port());
  std::vector<int> pids;
  for (int r = 0; r < world; ++r)
    pids.push_back(spawn_process(argv, env_for(r, world, port), logs + ".out" + std::to_string(r),
                                 logs + ".err" + std::to_string(r)));
  for (int r = 0; r < world; ++r)
    ASSERT_EQ(wait_process(pids[r], std::chrono::seconds(120)), 0)
        << read_text(logs + ".err" + std::to_string(r));
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
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

void expect_same_run(const std::string& a, const std::string& b, int world) {
  const auto la = metrics(a), lb = metrics(b);
  ASSERT_EQ(la.size(), 24u);
  ASSERT_EQ(lb.size(), la.size());
  for (size_t i = 0; i < la.size(); ++i) {
    for (const char* k : {"step", "loss", "aux_l2", "lr", "grad_norm", "epoch"})
      EXPECT_EQ(la[i][k], lb[i][k])
          << k << " at step " << i + 1;  // bitwise: doubles round-trip in JSON
  }
  for (int r = 0; r < world; ++r) {
    const std::string f = "/final.rank" + std::to_string(r) + ".safetensors";
    auto wa = io::SafetensorsFile::open(a + f), wb = io::SafetensorsFile::open(b + f);
    ASSERT_EQ(wa->names(), wb->names());
    for (const auto& n : wa->names())
      EXPECT_TRUE(torch::equal(wa->tensor(n), wb->tensor(n))) << n << " rank " << r;
  }
}

/// Uninterrupted run vs a run SIGKILLed (every rank) once checkpoint-`after` exists, then resumed.
void kill_and_resume(int world, int after) {
  TempDir d;
  run_ranks(worker(d.path() + "/full"), world, d.path() + "/full");
  const std::string run = d.path() + "/killed";
  const std::string port = std::to_string(free_port());
  std::vector<int> pids;
  for (int r = 0; r < world; ++r) {
    pids.push_back(spawn_process(worker(run, {"sleep_ms=40"}), env_for(r, world, port),
                                 d.path() + "/k.out" + std::to_string(r),
                                 d.path() + "/k.err" + std::to_string(r)));
  }
  ASSERT_TRUE(wait_for([&] { return fs::exists(run + "/checkpoint-" + std::to_string(after)); },
                       std::chrono::seconds(60)))
      << read_text(d.path() + "/k.err0");
  for (int pid : pids) ::kill(pid, SIGKILL);
  for (int pid : pids) EXPECT_EQ(wait_process(pid, std::chrono::seconds(30)), 128 + SIGKILL);
  const auto killed_at = metrics(run).size();
  EXPECT_LT(killed_at, 24u) << "the kill came too late to test anything";
  const auto latest = runtime::find_latest_checkpoint(run);
  ASSERT_TRUE(latest.has_value());
  run_ranks(worker(run, {"resume=latest"}), world, d.path() + "/resumed");
  EXPECT_NE(read_text(d.path() + "/resumed.err0").find("resumed from " + *latest),
            std::string::npos)
      << read_text(d.path() + "/resumed.err0");
  std::cout << "[ measured ] killed after step " << killed_at << ", resumed from "
            << fs::path(*latest).filename().string() << "\n";
  expect_same_run(d.path() + "/full", run, world);
}

TEST(TrainerResume, SigkillThenResumeIsBitwiseTheUninterruptedRun) {
  kill_and_resume(1, 8);
}

TEST(TrainerResume, TwoRanksSigkillThenResumeIsBitwiseTheUninterruptedRun) {
  kill_and_resume(2, 6);
}

TEST(TrainerResume, KillDuringACheckpointWriteLeavesThePreviousOneLoadable) {
  TempDir d;
  run_ranks(worker(d.path() + "/full"), 1, d.path() + "/full");
  const std::string run = d.path() + "/killed";
  const int pid =
      spawn_process(worker(run), env_for(0, 1, "", {{runtime::kPauseCheckpointEnv, "60@6"}}),
                    d.path() + "/k.out", d.path() + "/k.err");
  // the write of checkpoint-6 pauses after its first file (and says so): kill it there
  std::string temp;
  ASSERT_TRUE(wait_for(
      [&] {
        if (!fs::exists(run)) return false;
        if (read_text(d.path() + "/k.err").find("pausing the write of checkpoint 6") == std::string::npos) return false;
        for (const auto& e : fs::directory_iterator(run)) {
          if (e.path().filename().string().rfind(".tmp-checkpoint-6-", 0) == 0 &&
              fs::exists(e.path() / "adapter_model.safetensors")) {
            temp = e.path().string();
            return true;
          }
        }
        return false;
      },
      std::chrono::seconds(60)))
      << read_text(d.path() + "/k.err");
  ::kill(pid, SIGKILL);
  EXPECT_EQ(wait_process(pid, std::chrono::seconds(30)), 128 + SIGKILL);
  EXPECT_NE(read_text(d.path() + "/k.err").find("pausing the write of checkpoint 6"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(run + "/checkpoint-6"));
  EXPECT_TRUE(fs::exists(temp));
  ASSERT_EQ(runtime::find_latest_checkpoint(run).value_or(""), run + "/checkpoint-4");
  const auto previous = runtime::load_checkpoint(run + "/checkpoint-4");
  EXPECT_EQ(previous.state.step, 4);
  EXPECT_EQ(previous.weights.size(), 3u);
  run_ranks(worker(run, {"resume=latest"}), 1, d.path() + "/resumed");
  EXPECT_FALSE(fs::exists(temp)) << "the resumed run removes the half-written directory";
  expect_same_run(d.path() + "/full", run, 1);
}

}  // namespace test_trainer_resume
}  // namespace mmtune::testing
