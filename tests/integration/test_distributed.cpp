// Two real processes rendezvous through a TCPStore and all-reduce through LibTorch's c10d Gloo
// backend: proves the wheel's c10d C++ API (plus Debian's Gloo headers) links and works.
#include <gtest/gtest.h>

#include "test_utils.h"

namespace mmtune::testing {
namespace test_distributed {

TEST(Distributed, TwoProcessGlooAllReduceAndBroadcast) {
  TempDir d;
  const int world = 2;
  const std::string port = std::to_string(free_port());
  std::vector<int> pids;
  for (int r = 0; r < world; ++r) {
    pids.push_back(spawn_process({kDistWorkerBin},
                                 {{"RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(world)},
                                  {"LOCAL_RANK", std::to_string(r)}, {"MASTER_ADDR", "127.0.0.1"},
                                  {"MASTER_PORT", port}, {"OMP_NUM_THREADS", "1"}},
                                 d.path() + "/out" + std::to_string(r), d.path() + "/err" + std::to_string(r)));
  }
  for (int r = 0; r < world; ++r) {
    const int rc = wait_process(pids[r], std::chrono::seconds(90));
    EXPECT_EQ(rc, 0) << "rank " << r << " stderr:\n" << read_text(d.path() + "/err" + std::to_string(r));
    EXPECT_EQ(read_text(d.path() + "/out" + std::to_string(r)), "rank " + std::to_string(r) + " ok\n");
  }
}

TEST(Distributed, RendezvousWithAMissingRankTimesOutWithAnError) {
  TempDir d;
  // WORLD_SIZE 2 but only rank 0 starts: the store waits for a worker that never comes.
  const int pid = spawn_process({kDistWorkerBin},
                                {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MMTUNE_TEST_TIMEOUT_S", "3"},
                                 {"MASTER_PORT", std::to_string(free_port())}},
                                d.path() + "/out", d.path() + "/err");
  const int rc = wait_process(pid, std::chrono::seconds(90));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(read_text(d.path() + "/err").find("rendezvous of rank 0/2"), std::string::npos)
      << read_text(d.path() + "/err");
}

}  // namespace test_distributed
}  // namespace mmtune::testing
