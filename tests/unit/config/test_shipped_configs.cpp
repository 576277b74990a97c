// Every file in configs/ validates; the headline recipe is the LaVIN-7B recipe.
#include <gtest/gtest.h>

#include <mmtune/adapters/mma.h>
#include <mmtune/adapters/registry.h>
#include <mmtune/config/load.h>

#include <filesystem>

#include "test_utils.h"

namespace mmtune::config {
namespace test_shipped_configs {

RunConfig load(const std::string& rel) {
  return load_config(std::string(mmtune::testing::kSourceDir) + "/configs/" + rel, {}, adapters::builtin_adapters());
}

TEST(ShippedConfigs, EveryConfigValidates) {
  int n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(std::string(mmtune::testing::kSourceDir) + "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().string());
    EXPECT_NO_THROW(load_config(e.path().string(), {}, adapters::builtin_adapters()));
    ++n;
  }
  EXPECT_GE(n, 9);
}

TEST(ShippedConfigs, HeadlineRecipeIsLavin7B) {
  EXPECT_EQ(to_yaml(load("scienceqa.yaml")), to_yaml(load("lavin/scienceqa-7b.yaml")));
}

TEST(ShippedConfigs, LavinRecipesMatchTheOfficialHyperParameters) {
  for (const auto& [file, temperature] : {std::pair{"lavin/scienceqa-7b.yaml", 10.0}, {"lavin/scienceqa-13b.yaml", 5.0}}) {
    const RunConfig c = load(file);
    EXPECT_EQ(c.train.global_batch_size, 32);
    EXPECT_DOUBLE_EQ(c.train.resolved_lr(), 1.125e-3);  // blr 9e-3 * 32 / 256
    EXPECT_DOUBLE_EQ(c.train.weight_decay, 0.02);
    EXPECT_EQ(c.train.epochs, 20);
    EXPECT_DOUBLE_EQ(c.train.warmup_epochs, 2.0);
    EXPECT_EQ(c.data.max_length, 512);
    EXPECT_EQ(c.data.prompt_format, "QCM-ALE");
    const auto& mma = c.adapter.selected<adapters::MmaConfig>();
    EXPECT_EQ(mma.dim, 8);
    EXPECT_DOUBLE_EQ(mma.temperature, temperature);
  }
}

}  // namespace test_shipped_configs
}  // namespace mmtune::config
