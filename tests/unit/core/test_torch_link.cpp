// Guards link-order traps of the PyPI torch wheel (third_party/cmake/MmtuneTorch.cmake).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "test_utils.h"

namespace mmtune {
namespace test_torch_link {

// libtorch.so exports a broken std::filesystem::remove_all; ours must bind to libstdc++'s.
TEST(TorchLink, StdFilesystemResolvesToLibstdcxx) {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(testing::kScratchDir) / "fs-probe";
  fs::create_directories(root / "a" / "b");
  std::ofstream(root / "a" / "b" / "f.txt") << "x";
  std::error_code ec;
  EXPECT_EQ(fs::remove_all(root, ec), 4u);  // root, a, b, f.txt
  EXPECT_FALSE(ec);
  EXPECT_FALSE(fs::exists(root));
}

TEST(TorchLink, TwoLineTorchProgramRuns) {
  const torch::Tensor t = torch::ones({2, 2});
  EXPECT_EQ(t.sum().item<float>(), 4.0f);
}

}  // namespace test_torch_link
}  // namespace mmtune
