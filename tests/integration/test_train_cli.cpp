// `mmtune train` end to end on the tiny checkpoints and the synthetic ScienceQA set (issue #6):
// the loss falls, 16 samples are overfitted, checkpoints load back, bad inputs fail cleanly.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <thread>

#include <signal.h>

#include <nlohmann/json.hpp>

#include <mmtune/io/safetensors.h>

#include "test_paths.h"
#include "numerics.h"
#include "test_utils.h"

namespace mmtune::testing {
namespace test_train_cli {

namespace fs = std::filesystem;

std::vector<std::string> tiny_args(const std::string& out) {
  return {kMmtuneBin,
          "train",
          "--config",
          std::string(kSourceDir) + "/configs/lavin/tiny.yaml",
          std::string("model.path=") + kTinyDir + "/llama-gqa",
          std::string("vision.path=") + kTinyDir + "/clip-vit",
          std::string("data.root=") + kSyntheticSqaDir,
          "output_dir=" + out};
}

ProcessResult train(const std::string& out, const std::vector<std::string>& extra,
                    std::chrono::seconds timeout = std::chrono::seconds(240)) {
  auto args = tiny_args(out);
  args.insert(args.end(), extra.begin(), extra.end());
  return run_process(args, {{"OMP_NUM_THREADS", "1"}}, timeout);
}

std::vector<double> losses(const std::string& out) {
  std::ifstream f(out + "/metrics.jsonl");
  std::vector<double> v;
  std::string line;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) v.push_back(j["loss"].get<double>());
  }
  return v;
}

double mean(const std::vector<double>& v, size_t from, size_t to) {
  return std::accumulate(v.begin() + from, v.begin() + to, 0.0) / static_cast<double>(to - from);
}

TEST(TrainCli, TinyLavinOnSyntheticScienceQAHalvesTheLoss) {
  TempDir dir;
  const std::string out = dir.path() + "/run";
  const auto r = train(out, {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto l = losses(out);
  ASSERT_GE(l.size(), 100u) << "3 epochs of 400 samples at global batch 8 are 150 steps";
  const size_t tenth = l.size() / 10;
  const double first = mean(l, 0, tenth), last = mean(l, l.size() - tenth, l.size());
  std::cout << "steps " << l.size() << ", mean loss first 10% " << first << ", last 10% " << last << "\n";
  EXPECT_LT(last, 0.5 * first);
  // the last checkpoint is an adapter directory the rest of the tools read
  EXPECT_TRUE(fs::exists(out + "/checkpoint-" + std::to_string(l.size()) + "/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(out + "/checkpoint-" + std::to_string(l.size()) + "/adapter_config.json"));
}

// LaVIN-lite with both frozen towers quantized (model.quantize and vision.quantize): the adapters
// in the LLM and in the ViT train through the quantized weights (QLoRA-style) and meet the same
// target as the full-precision run above; the checkpoint holds the adapters only.
TEST(TrainCli, TinyLavinOnQuantizedTowersHalvesTheLoss) {
  TempDir dir;
  const std::string out = dir.path() + "/run";
  const auto r = train(out, {"model.quantize=int4", "model.quant_group=32", "model.quant_fallback=int8",
                             "vision.quantize=int4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto l = losses(out);
  ASSERT_GE(l.size(), 100u);
  const size_t tenth = l.size() / 10;
  const double first = mean(l, 0, tenth), last = mean(l, l.size() - tenth, l.size());
  std::cout << "steps " << l.size() << ", mean loss first 10% " << first << ", last 10% " << last << "\n";
  EXPECT_LT(last, 0.5 * first);
  const auto ckpt = io::SafetensorsFile::open(out + "/checkpoint-" + std::to_string(l.size()) + "/adapter_model.safetensors");
  bool vit_adapter = false;
  for (const auto& name : ckpt->names()) {
    EXPECT_EQ(name.find("qweight"), std::string::npos) << name;
    vit_adapter = vit_adapter || name.find("vision") != std::string::npos;
  }
  EXPECT_TRUE(vit_adapter) << "LaVIN's MMA adapters sit in the ViT too";
  // the checkpoint names the base's precision it was trained on (docs/QUANTIZATION.md)
  const auto cfg = nlohmann::json::parse(
      read_text(out + "/checkpoint-" + std::to_string(l.size()) + "/adapter_config.json"));
  EXPECT_EQ(cfg["base_model"]["quantize"], "int4-g32");
  EXPECT_EQ(cfg["vision_model"]["quantize"], "int4-g32");
  EXPECT_EQ(cfg["base_model"]["dtype"], "fp32");
}

TEST(TrainCli, OverfitsSixteenSamples) {
  TempDir dir;
  const std::string out = dir.path() + "/run";
  const auto r = train(out, {"data.limit=16", "train.micro_batch_size=8", "train.global_batch_size=16",
                             "train.epochs=80", "train.warmup_epochs=5",
                             "train.save_every=100000", "train.keep_last=1", "train.log_every=50"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto l = losses(out);
  ASSERT_EQ(l.size(), 80u);
  const double tail = mean(l, l.size() - 5, l.size());
  std::cout << "first loss " << l.front() << ", mean of the last 5 steps " << tail << "\n";
  EXPECT_LT(tail, 0.05);
}

TEST(TrainCli, ResumeLatestContinuesTheRun) {
  TempDir dir;
  const std::string out = dir.path() + "/run";
  ASSERT_EQ(train(out, {"train.max_steps=4", "train.save_every=2"}).exit_code, 0);
  const auto r = train(out, {"train.max_steps=6", "train.save_every=2", "--resume"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming from " + out + "/checkpoint-4"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(out + "/checkpoint-6/adapter_model.safetensors"));
  EXPECT_EQ(losses(out).size(), 6u) << "metrics.jsonl continues after step 4";
}

TEST(TrainCli, AFreshRunIntoAUsedOutputDirIsRefusedUnlessOverwrite) {
  // issue 20: a new run into an old run's output_dir kept the old checkpoint-80/100 (keep_last
  // deleted the new ones first) and overwrote metrics.jsonl; a later --resume picked up the old run
  TempDir dir;
  const std::string out = dir.path() + "/run";
  ASSERT_EQ(train(out, {"train.max_steps=2", "train.save_every=2"}).exit_code, 0);
  const std::string metrics_before = read_text(out + "/metrics.jsonl");
  const auto again = train(out, {"train.max_steps=1", "train.save_every=1"});
  EXPECT_EQ(again.exit_code, 2) << again.err;
  EXPECT_NE(again.err.find("output_dir " + out + " already holds a training run (checkpoint-2, metrics.jsonl)"),
            std::string::npos) << again.err;
  EXPECT_NE(again.err.find("pass --resume to continue it"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  EXPECT_EQ(read_text(out + "/metrics.jsonl"), metrics_before) << "the refused run wrote nothing";
  EXPECT_FALSE(fs::exists(out + "/checkpoint-1"));
  // --overwrite: the old run's checkpoints and metrics go first, then the new run
  const auto over = train(out, {"train.max_steps=1", "train.save_every=1", "--overwrite"});
  ASSERT_EQ(over.exit_code, 0) << over.err;
  EXPECT_TRUE(fs::exists(out + "/checkpoint-1/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/checkpoint-2"));
  EXPECT_EQ(losses(out).size(), 1u);
  // --resume and --overwrite together make no sense
  EXPECT_EQ(train(out, {"--resume", "--overwrite"}).exit_code, 2);
}

TEST(TrainCli, ASecondRunIntoABusyOutputDirFailsAtOnce) {
  // issue 20: two runs into one output_dir at once interleaved metrics.jsonl lines and failed a
  // checkpoint; the first holds a lock on the directory, the second names it and the holder's pid
  TempDir dir;
  const std::string out = dir.path() + "/run";
  auto args = tiny_args(out);
  args.push_back("train.max_steps=100000");  // runs until killed
  args.push_back("train.save_every=100000");
  const int first = spawn_process(args, {{"OMP_NUM_THREADS", "1"}}, dir.path() + "/first.out", dir.path() + "/first.err");
  bool started = false;
  for (int i = 0; i < 600 && !started; ++i) {  // until the first run has written a metrics line
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    started = fs::exists(out + "/metrics.jsonl") && fs::file_size(out + "/metrics.jsonl") > 0;
  }
  ASSERT_TRUE(started) << read_text(dir.path() + "/first.err");
  const auto t0 = std::chrono::steady_clock::now();
  const auto second = train(out, {"train.max_steps=2"});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::kill(first, SIGKILL);
  wait_process(first, std::chrono::seconds(30));
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_NE(second.err.find("output_dir " + out + " is in use by another mmtune run (pid " + std::to_string(first) + ")"),
            std::string::npos) << second.err;
  EXPECT_NE(second.err.find("hint:"), std::string::npos) << second.err;
  EXPECT_LT(seconds, 30.0) << "fails at once, before loading the model";
  // every metrics line is whole JSON: the second run wrote none
  std::istringstream in(read_text(out + "/metrics.jsonl"));
  for (std::string line; std::getline(in, line);) EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  // the lock dies with its holder: a --resume-less run is now refused for the old run, not the lock
  const auto after = train(out, {"train.max_steps=1"});
  EXPECT_NE(after.err.find("already holds a training run"), std::string::npos) << after.err;
}

TEST(TrainCli, ActivationCheckpointingGivesTheSameLosses) {
  TempDir dir;
  const auto a = train(dir.path() + "/plain", {"train.max_steps=3", "data.num_workers=0"});
  const auto b = train(dir.path() + "/ckpt", {"train.max_steps=3", "data.num_workers=0",
                                              "train.activation_checkpointing=true"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const auto la = losses(dir.path() + "/plain"), lb = losses(dir.path() + "/ckpt");
  ASSERT_EQ(la.size(), 3u);
  ASSERT_EQ(lb.size(), 3u);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;
}

// One run of the real model for the data-parallel check: 1 process, or 2 Gloo ranks; per-step
// losses and the step-4 adapter (float64 tensors; the checkpoint stores fp32).
struct DpRun {
  torch::Tensor losses, weights;
};

DpRun dp_run(const std::string& out, int ranks, const std::vector<std::string>& extra) {
  std::vector<std::string> common{"train.max_steps=4", "data.num_workers=0", "train.save_every=4"};
  common.insert(common.end(), extra.begin(), extra.end());
  if (ranks == 1) {
    EXPECT_EQ(train(out, common).exit_code, 0);
  } else {
    auto args = tiny_args(out);
    args.insert(args.end(), common.begin(), common.end());
    const std::string port = std::to_string(free_port());
    fs::create_directories(out + "-logs");
    std::vector<int> pids;
    for (int r = 0; r < 2; ++r)
      pids.push_back(spawn_process(args,
                                   {{"RANK", std::to_string(r)}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", std::to_string(r)},
                                    {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}, {"OMP_NUM_THREADS", "1"}},
                                   out + "-logs/out" + std::to_string(r), out + "-logs/err" + std::to_string(r)));
    for (int r = 0; r < 2; ++r)
      EXPECT_EQ(wait_process(pids[r], std::chrono::seconds(240)), 0) << read_text(out + "-logs/err" + std::to_string(r));
  }
  const auto l = losses(out);
  EXPECT_EQ(l.size(), 4u) << out;
  const auto w = io::SafetensorsCheckpoint::open(out + "/checkpoint-4/adapter_model.safetensors");
  std::vector<torch::Tensor> flat;
  for (const auto& n : w.names()) flat.push_back(w.tensor(n).to(torch::kFloat64).reshape({-1}));
  return {torch::tensor(l, torch::TensorOptions().dtype(torch::kFloat64)), torch::cat(flat)};
}

// Data parallelism with the real model: 2 Gloo ranks x micro-batch 4 vs 1 process x 2 accumulations
// x micro-batch 4 (global batch 8 both). Not bitwise in fp32 (the gradient sums happen in the
// all-reduce vs in autograd's accumulation), so all four runs: fp32 and again with dtype=fp64 (the
// frozen model and the adapters' masters in float64). In float64 the per-step losses agree to 1e-12
// and the step-4 adapters to one fp32 ulp (the checkpoint stores fp32); in fp32 both agree within
// 4x the larger fp32-vs-fp64 drift of either run (tests/numerics.h).
TEST(TrainCli, TwoRanksEqualOneRankWithAccumulation) {
  TempDir dir;
  const DpRun one32 = dp_run(dir.path() + "/one", 1, {}), two32 = dp_run(dir.path() + "/two", 2, {});
  const DpRun one64 = dp_run(dir.path() + "/one64", 1, {"dtype=fp64"});
  const DpRun two64 = dp_run(dir.path() + "/two64", 2, {"dtype=fp64"});
  ASSERT_EQ(one32.losses.numel(), 4);
  ASSERT_EQ(two64.losses.numel(), 4);
  ASSERT_EQ(one32.weights.sizes(), two64.weights.sizes());
  expect_same_result("tiny LaVIN training, 1 rank x 2 accumulations vs 2 ranks: per-step losses", one32.losses,
                     two32.losses, one64.losses, two64.losses, {}, 1e-12);
  const double ulp = std::numeric_limits<float>::epsilon() * max_abs(one64.weights);
  expect_same_result("tiny LaVIN training, 1 rank x 2 accumulations vs 2 ranks: step-4 adapter", one32.weights,
                     two32.weights, one64.weights, two64.weights, {}, ulp);
}

// ---- bad inputs: a clear one-line error naming what is wrong, a non-zero exit, no checkpoint ----

void expect_clean_failure(const ProcessResult& r, const std::string& out, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint:"), std::string::npos) << r.err;
  bool any_checkpoint = false;
  if (fs::exists(out))
    for (const auto& e : fs::directory_iterator(out))
      any_checkpoint |= e.path().filename().string().rfind("checkpoint", 0) == 0;
  EXPECT_FALSE(any_checkpoint);
}

TEST(TrainCli, MissingDataFilesAreNamed) {
  TempDir dir;
  const std::string out = dir.path() + "/run";
  const auto r = train(out, {"data.root=" + dir.path() + "/nowhere"});
  expect_clean_failure(r, out, dir.path() + "/nowhere/pid_splits.json: splits file not found");
  // splits present, problems.json missing
  fs::create_directories(dir.path() + "/half");
  fs::copy_file(std::string(kSyntheticSqaDir) + "/pid_splits.json", dir.path() + "/half/pid_splits.json");
  const auto r2 = train(out, {"data.root=" + dir.path() + "/half"});
  expect_clean_failure(r2, out, dir.path() + "/half/problems.json");
}

TEST(TrainCli, MaxLengthBeyondTheModelsContextIsAConfigError) {
  // issue 20: data.max_length 4000 trained on 4000 positions of a 512-position model
  TempDir dir;
  const auto r = train(dir.path() + "/out", {"data.max_length=4000"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("data.max_length"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("more than the model's context of 512 positions"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("set data.max_length <= 512"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.path() + "/out/checkpoint-1"));
}

TEST(TrainCli, UnknownSplitListsTheAvailableOnes) {
  TempDir dir;
  const std::string out = dir.path() + "/run";
  const auto r = train(out, {"data.train_split=trian"});
  expect_clean_failure(r, out, "trian");
  EXPECT_NE(r.err.find("train"), std::string::npos);
}

TEST(TrainCli, CudaWithoutADeviceIsAUsageError) {
  if (std::getenv("CUDA_VISIBLE_DEVICES") && std::string(std::getenv("CUDA_VISIBLE_DEVICES")) != "")
    GTEST_SKIP() << "a CUDA device may exist here";
  TempDir dir;
  const std::string out = dir.path() + "/run";
  const auto r = train(out, {"device=cuda"});
  expect_clean_failure(r, out, "no CUDA device");
  EXPECT_EQ(r.exit_code, 2);
}

/// A copy of the synthetic set in which one training image is corrupt.
std::string corrupt_copy(const TempDir& dir, std::string* bad_pid) {
  const std::string root = dir.path() + "/sqa";
  fs::copy(kSyntheticSqaDir, root, fs::copy_options::recursive);
  for (const auto& e : fs::recursive_directory_iterator(root + "/images/train")) {
    if (e.path().filename() == "image.png") {
      std::ofstream(e.path(), std::ios::trunc) << "not a png";
      *bad_pid = e.path().parent_path().filename().string();
      break;
    }
  }
  return root;
}

TEST(TrainCli, CorruptImageNamesTheSampleOrIsSkippedAndCounted) {
  TempDir dir;
  std::string pid;
  const std::string root = corrupt_copy(dir, &pid);
  ASSERT_FALSE(pid.empty());
  const auto err = train(dir.path() + "/a", {"data.root=" + root, "train.max_steps=60", "data.num_workers=0"});
  expect_clean_failure(err, dir.path() + "/a", pid);
  const auto skip = train(dir.path() + "/b", {"data.root=" + root, "train.epochs=1", "data.on_bad_sample=skip"});
  EXPECT_EQ(skip.exit_code, 0) << skip.err;
  EXPECT_NE(skip.err.find("1 samples skipped"), std::string::npos) << skip.err;
}

TEST(TrainCli, MissingImageFileNamesPidAndPath) {
  TempDir dir;
  std::string pid;
  const std::string root = corrupt_copy(dir, &pid);
  fs::remove(root + "/images/train/" + pid + "/image.png");
  const auto r = train(dir.path() + "/a", {"data.root=" + root});
  expect_clean_failure(r, dir.path() + "/a", root + "/images/train/" + pid + "/image.png");
}

TEST(TrainCli, RowsLongerThanMaxLengthAreCutAndCounted) {
  TempDir dir;
  const auto r = train(dir.path() + "/a", {"data.max_length=40", "train.max_steps=2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("training rows were cut at data.max_length 40"), std::string::npos) << r.err;
}

}  // namespace test_train_cli
}  // namespace mmtune::testing
