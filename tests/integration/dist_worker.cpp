// One rank of the distributed plumbing test: rendezvous from torchrun-style environment variables,
// then all-reduce and broadcast through c10d's Gloo backend. Prints "rank R ok" and exits 0.
#include <mmtune/core/dist_env.h>
#include <mmtune/core/errors.h>
#include <mmtune/train/distributed.h>

#include <cstdlib>
#include <iostream>

int main() {
  using namespace mmtune;
  try {
    torch::set_num_threads(1);
    const DistEnv env = DistEnv::from_env();
    const char* timeout_env = std::getenv("MMTUNE_TEST_TIMEOUT_S");
    const auto timeout = std::chrono::seconds(timeout_env ? std::atoi(timeout_env) : 30);
    auto pg = train::ProcessGroup::create(env, "gloo", false, timeout);
    const int r = pg->rank(), w = pg->size();
    // rank r contributes (r+1) * [1, 10, 100]: the sum is w(w+1)/2 * [1, 10, 100]
    torch::Tensor t = torch::tensor({1.0f, 10.0f, 100.0f}) * static_cast<float>(r + 1);
    pg->all_reduce_sum_(t);
    const float s = w * (w + 1) / 2.0f;
    if (!torch::equal(t, torch::tensor({s, 10 * s, 100 * s}))) {
      std::cerr << "rank " << r << ": all_reduce gave " << t << "\n";
      return 1;
    }
    torch::Tensor b = torch::full({4}, static_cast<float>(r == 0 ? 42 : -1));
    pg->broadcast_(b, 0);
    if (!torch::equal(b, torch::full({4}, 42.0f))) {
      std::cerr << "rank " << r << ": broadcast gave " << b << "\n";
      return 1;
    }
    pg->barrier();
    std::cout << "rank " << r << " ok\n";
    return 0;
  } catch (const Error& e) {
    std::cerr << e.one_line() << "\n";
    return 1;
  }
}
