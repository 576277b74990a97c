// Shared main of mmtune's test executables: one intra-op thread per test process (ctest -j2 runs
// two at a time on a 2-core machine; MMTUNE_TEST_THREADS=N runs the in-process tests on N, as CI
// does once for the numerics label), quiet logging unless asked.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <mmtune/core/logging.h>

#include <algorithm>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* threads = std::getenv("MMTUNE_TEST_THREADS");
  torch::set_num_threads(threads && *threads ? std::max(1, std::atoi(threads)) : 1);
  mmtune::log::init(mmtune::log::Level::kWarn);
  return RUN_ALL_TESTS();
}
