// Trainer checkpoints: round trip, keep_last, "latest" resolution past incomplete and temp
// directories, re-saving a step, corrupt and missing files, RNG state capture.
#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>

#include "test_utils.h"
#include <mmtune/core/errors.h>
#include <mmtune/runtime/checkpoint.h>

namespace mmtune::runtime {
namespace test_checkpoint {
namespace fs = std::filesystem;

runtime::Checkpoint make(int64_t step) {
  runtime::Checkpoint c;
  c.state.step = step;
  c.state.epoch = step / 4.0;
  c.state.position = {step / 4, (step % 4) * 2};
  c.state.skipped_steps = 1;
  c.state.world_size = 2;
  c.state.micro_batch_size = 2;
  c.state.global_batch_size = 8;
  c.state.accumulation = 2;
  c.state.lr = 1e-3 * static_cast<double>(step);
  c.state.schedule = {1e-3, 1e-5, 0.5, 3.0, true};
  c.state.config_yaml = "train:\n  lr: 0.001\n";
  c.state.seed = 42;
  c.weights = {{"adapters.mma.down.weight", torch::full({2, 3}, static_cast<float>(step))},
               {"adapters.mma.down.bias", torch::arange(2, torch::kFloat32)}};
  c.tensors["exp_avg.adapters.mma.down.weight"] = torch::ones({2, 3});
  c.tensors["step.adapters.mma.down.weight"] = torch::tensor(step, torch::kInt64);
  for (auto& [n, t] : runtime::capture_rng_state(".rank0")) c.tensors[n] = t;
  c.adapter_config_json = "{\"family\": \"mma\"}\n";
  return c;
}

TEST(Checkpoint, RoundTripKeepsEveryField) {
  testing::TempDir d;
  const std::string dir = runtime::save_checkpoint(d.path(), make(6), 3);
  EXPECT_EQ(dir, d.path() + "/checkpoint-6");
  for (const char* f : {"adapter_model.safetensors", "adapter_config.json",
                        "trainer_state.safetensors", "trainer_state.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  const runtime::Checkpoint c = runtime::load_checkpoint(dir);
  const runtime::Checkpoint w = make(6);
  EXPECT_EQ(c.state.step, 6);
  EXPECT_DOUBLE_EQ(c.state.epoch, 1.5);
  EXPECT_EQ(c.state.position, (data::LoaderPosition{1, 4}));
  EXPECT_EQ(c.state.skipped_steps, 1);
  EXPECT_EQ(c.state.world_size, 2);
  EXPECT_EQ(c.state.accumulation, 2);
  EXPECT_EQ(c.state.global_batch_size, 8);
  EXPECT_EQ(c.state.seed, 42u);
  EXPECT_DOUBLE_EQ(c.state.lr, 6e-3);
  EXPECT_DOUBLE_EQ(c.state.schedule.warmup_epochs, 0.5);
  EXPECT_DOUBLE_EQ(c.state.schedule.total_epochs, 3.0);
  EXPECT_EQ(c.state.config_yaml, w.state.config_yaml);
  EXPECT_EQ(c.adapter_config_json, w.adapter_config_json);
  ASSERT_EQ(c.weights.size(), 2u);
  for (const auto& [n, t] : w.weights) {
    const std::string& name = n;  // clang 14 cannot capture a structured binding
    auto it = std::find_if(c.weights.begin(), c.weights.end(),
                           [&](const auto& p) { return p.first == name; });
    ASSERT_NE(it, c.weights.end()) << n;
    EXPECT_TRUE(torch::equal(it->second, t)) << n;
  }
  for (const auto& [n, t] : w.tensors) EXPECT_TRUE(torch::equal(c.tensors.at(n), t)) << n;
  EXPECT_NE(testing::read_text(dir + "/trainer_state.json").find("\"rng.torch_cpu.rank0\""),
            std::string::npos);
}

TEST(Checkpoint, KeepsTheLastKAndResolvesLatest) {
  testing::TempDir d;
  for (int64_t s : {2, 4, 6, 8}) runtime::save_checkpoint(d.path(), make(s), 2);
  EXPECT_FALSE(fs::exists(d.path() + "/checkpoint-2"));
  EXPECT_FALSE(fs::exists(d.path() + "/checkpoint-4"));
  EXPECT_TRUE(fs::exists(d.path() + "/checkpoint-6"));
  EXPECT_EQ(runtime::find_latest_checkpoint(d.path()).value(), d.path() + "/checkpoint-8");
  EXPECT_EQ(runtime::resolve_checkpoint(d.path(), "latest"), d.path() + "/checkpoint-8");
  EXPECT_EQ(runtime::resolve_checkpoint(d.path(), d.path() + "/checkpoint-6"), d.path() + "/checkpoint-6");
  EXPECT_EQ(runtime::checkpoint_step(d.path() + "/checkpoint-6"), 6);
  EXPECT_EQ(runtime::checkpoint_step(d.path() + "/checkpoint-6/"), 6);
  EXPECT_EQ(runtime::checkpoint_step(d.path() + "/checkpoint-x"), -1);
  EXPECT_EQ(runtime::checkpoint_step(d.path() + "/.tmp-checkpoint-6-1"), -1);
  // numeric order, not text order: 10 > 8
  runtime::save_checkpoint(d.path(), make(10), 5);
  EXPECT_EQ(runtime::find_latest_checkpoint(d.path()).value(), d.path() + "/checkpoint-10");
}

TEST(Checkpoint, HalfWrittenTempAndIncompleteDirectoriesAreIgnoredAndTempsCleaned) {
  testing::TempDir d;
  runtime::save_checkpoint(d.path(), make(4), 5);
  // a write killed midway: temp dir with only the adapter file
  fs::create_directories(d.path() + "/.tmp-checkpoint-6-12345");
  d.write(".tmp-checkpoint-6-12345/adapter_model.safetensors", "partial");
  // a directory someone truncated: no trainer state
  fs::create_directories(d.path() + "/checkpoint-9");
  d.write("checkpoint-9/adapter_model.safetensors", "x");
  EXPECT_FALSE(runtime::is_complete_checkpoint(d.path() + "/checkpoint-9"));
  EXPECT_EQ(runtime::find_latest_checkpoint(d.path()).value(), d.path() + "/checkpoint-4");
  EXPECT_NO_THROW(runtime::load_checkpoint(runtime::find_latest_checkpoint(d.path()).value()));
  runtime::save_checkpoint(d.path(), make(8), 5);
  EXPECT_FALSE(fs::exists(d.path() + "/.tmp-checkpoint-6-12345"))
      << "the next save removes stale temps";
  EXPECT_EQ(runtime::remove_stale_checkpoint_temps(d.path()), 0);
}

TEST(Checkpoint, SavingTheSameStepAgainReplacesIt) {
  testing::TempDir d;
  runtime::save_checkpoint(d.path(), make(4), 3);
  runtime::Checkpoint c = make(4);
  c.state.lr = 0.5;
  runtime::save_checkpoint(d.path(), c, 3);
  EXPECT_DOUBLE_EQ(runtime::load_checkpoint(d.path() + "/checkpoint-4").state.lr, 0.5);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(d.path())) ++entries, (void)e;
  EXPECT_EQ(entries, 1) << "no leftover of the replaced directory";
}

TEST(Checkpoint, CorruptOrMissingFilesAreCheckpointErrorsWithHints) {
  testing::TempDir d;
  const std::string dir = runtime::save_checkpoint(d.path(), make(3), 3);
  auto expect_error = [](const std::string& path, const std::string& needle) {
    try {
      runtime::load_checkpoint(path);
      ADD_FAILURE() << "expected a CheckpointError for " << needle;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_FALSE(e.hint().empty()) << e.what();
    }
  };
  expect_error(d.path() + "/checkpoint-99", "no such checkpoint directory");
  std::ofstream(dir + "/trainer_state.json")
      << "{\"format\": \"mmtune.trainer_state\", \"version\": 1, \"step\": ";
  expect_error(dir, "not valid JSON");
  std::ofstream(dir + "/trainer_state.json")
      << "{\"format\": \"mmtune.trainer_state\", \"version\": 1, \"step\": 3}";
  expect_error(dir, "malformed trainer state");
  std::ofstream(dir + "/trainer_state.json") << "{\"step\": 3}";
  expect_error(dir, "not an mmtune trainer state");
  // values of the wrong type are errors too, not a json type_error escaping
  std::ofstream(dir + "/trainer_state.json") << "{\"format\": null, \"step\": 3}";
  expect_error(dir, "not an mmtune trainer state");
  std::ofstream(dir + "/trainer_state.json") << "{\"format\": \"mmtune.trainer_state\", \"version\": \"1\"}";
  expect_error(dir, "malformed trainer state: version must be an integer");
  const std::string dir2 = runtime::save_checkpoint(d.path(), make(5), 3);
  fs::remove(dir2 + "/trainer_state.safetensors");
  expect_error(dir2, "trainer_state.safetensors");
  std::ofstream(dir2 + "/trainer_state.safetensors") << "garbage";
  expect_error(dir2, "trainer_state.safetensors");
  try {
    runtime::resolve_checkpoint(d.path() + "/empty", "latest");
    ADD_FAILURE() << "expected a CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("no complete checkpoint"), std::string::npos) << e.what();
  }
  EXPECT_THROW(runtime::resolve_checkpoint(d.path(), dir), CheckpointError);  // incomplete now
}

TEST(Checkpoint, RngStateRestoresTheStream) {
  torch::manual_seed(123);
  torch::rand({3});
  std::map<std::string, torch::Tensor> saved;
  for (auto& [n, t] : runtime::capture_rng_state()) saved[n] = t;
  const torch::Tensor want = torch::rand({5});
  torch::rand({7});
  ASSERT_TRUE(runtime::restore_rng_state(saved));
  EXPECT_TRUE(torch::equal(torch::rand({5}), want));
  EXPECT_FALSE(runtime::restore_rng_state({}, ".rank3"));
}

}  // namespace test_checkpoint
}  // namespace mmtune::runtime
