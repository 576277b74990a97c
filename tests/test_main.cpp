// Shared main of mmtune's test executables: one intra-op thread per test process (ctest -j2 runs
// two at a time on a 2-core machine), quiet logging unless asked.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <mmtune/core/logging.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  torch::set_num_threads(1);
  mmtune::log::init(mmtune::log::Level::kWarn);
  return RUN_ALL_TESTS();
}
