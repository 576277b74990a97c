#include <gtest/gtest.h>

#include <mmtune/core/dist_env.h>
#include <mmtune/core/errors.h>

#include <cstdlib>

namespace mmtune {
namespace test_errors {

TEST(Errors, OneLineCarriesTheHintAndEachTypeItsExitCode) {
  EXPECT_EQ(Error("boom", "try this").one_line(), "boom (hint: try this)");
  EXPECT_EQ(Error("boom").one_line(), "boom");
  EXPECT_EQ(Error("x").exit_code(), ExitCode::kRuntime);
  EXPECT_EQ(UsageError("x").exit_code(), ExitCode::kUsage);
  EXPECT_EQ(Interrupted().exit_code(), ExitCode::kInterrupted);
  const CheckpointError c("/ckpt/a.safetensors", "truncated", "re-save it");
  EXPECT_EQ(c.one_line(), "/ckpt/a.safetensors: truncated (hint: re-save it)");
  EXPECT_EQ(c.exit_code(), ExitCode::kRuntime);
  EXPECT_EQ(DataError("/d/problems.json", "missing").path(), "/d/problems.json");
}

TEST(Errors, ConfigErrorSummarisesEveryProblem) {
  const ConfigError one({{"c.yaml:3:1", "train.lrr", "unknown key", "did you mean train.lr?"}});
  EXPECT_STREQ(one.what(), "c.yaml:3:1: train.lrr: unknown key (did you mean train.lr?)");
  EXPECT_EQ(one.exit_code(), ExitCode::kUsage);
  const ConfigError two({{"c.yaml:1:1", "a", "bad", ""}, {"c.yaml", "", "worse", ""}});
  EXPECT_STREQ(two.what(), "2 config problems:\n  c.yaml:1:1: a: bad\n  c.yaml: worse");
}

class DistEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                          "SLURM_NTASKS", "SLURM_LOCALID"})
      ::unsetenv(v);
  }
  void TearDown() override { SetUp(); }
};

TEST_F(DistEnvTest, UnsetMeansOneProcess) {
  const DistEnv e = DistEnv::from_env();
  EXPECT_FALSE(e.launched);
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
}

TEST_F(DistEnvTest, ReadsTorchrunVariables) {
  ::setenv("RANK", "3", 1);
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("LOCAL_RANK", "1", 1);
  ::setenv("MASTER_ADDR", "node0", 1);
  ::setenv("MASTER_PORT", "29512", 1);
  const DistEnv e = DistEnv::from_env();
  EXPECT_TRUE(e.launched);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29512);
}

TEST_F(DistEnvTest, SrunTasksStandInForTorchrunVariables) {
  ::setenv("SLURM_PROCID", "5", 1);
  ::setenv("SLURM_NTASKS", "8", 1);
  ::setenv("SLURM_LOCALID", "1", 1);
  EXPECT_FALSE(DistEnv::from_env().launched) << "without MASTER_ADDR an srun task is not a rendezvous";
  ::setenv("MASTER_ADDR", "node7", 1);
  const DistEnv e = DistEnv::from_env();
  EXPECT_TRUE(e.launched);
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  ::setenv("RANK", "0", 1);  // torchrun's variables win when both are present
  ::setenv("WORLD_SIZE", "2", 1);
  EXPECT_EQ(DistEnv::from_env().world_size, 2);
}

TEST_F(DistEnvTest, MalformedValuesNameTheVariable) {
  ::setenv("WORLD_SIZE", "two", 1);
  try {
    DistEnv::from_env();
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("WORLD_SIZE='two'"), std::string::npos);
  }
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "2", 1);
  EXPECT_THROW(DistEnv::from_env(), UsageError);
  ::setenv("RANK", "1", 1);
  ::setenv("MASTER_PORT", "70000", 1);
  EXPECT_THROW(DistEnv::from_env(), UsageError);
}

}  // namespace test_errors
}  // namespace mmtune
