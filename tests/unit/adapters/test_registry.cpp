#include <gtest/gtest.h>

#include <mmtune/adapters/mma.h>
#include <mmtune/adapters/registry.h>

namespace mmtune::adapters {
namespace test_registry {

TEST(AdapterRegistry, BuiltinFamiliesInRegistrationOrder) {
  EXPECT_EQ(builtin_adapters().family_names(), (std::vector<std::string>{"mma", "iaa", "mole", "lora"}));
  auto cfg = builtin_adapters().make_family_config("mma");
  ASSERT_NE(cfg, nullptr);
  EXPECT_EQ(cfg->family(), "mma");
  EXPECT_NE(dynamic_cast<MmaConfig*>(cfg.get()), nullptr);
  EXPECT_EQ(builtin_adapters().make_family_config("lavin"), nullptr);
}

TEST(AdapterRegistry, RejectsDuplicatesAndBadNames) {
  AdapterRegistry r;
  r.add(mma_family());
  EXPECT_THROW(r.add(mma_family()), Error);
  FamilyEntry bad = mma_family();
  bad.name = "My.Family";
  EXPECT_THROW(r.add(bad), Error);
  bad.name = "none";  // reserved: adapter.family: none means no adapter
  EXPECT_THROW(r.add(bad), Error);
  EXPECT_EQ(r.family_names().size(), 1u);
}

}  // namespace test_registry
}  // namespace mmtune::adapters
